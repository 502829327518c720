#include "joulecut/sensitivity.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/graph_stats.h"
#include "joulecut/measure/energy_model.h"
#include "joulecut/progress.h"
#include "joulecut/prune.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

// The fraction of a layer's weights that are not zero.
double nonzero_fraction(const LayerStats& l) {
  double weights = 1;
  for (auto d : l.weight_shape) weights *= double(d);
  return weights > 0 ? 1.0 - double(l.weight_zeros) / weights : 1.0;
}

// MACs with zero weights left out: what a runtime that skips zeros would do.
std::int64_t effective_macs(const ModelStats& stats) {
  double macs = 0;
  for (const auto& l : stats.layers) macs += double(l.macs) * nonzero_fraction(l);
  return std::int64_t(std::llround(macs / double(stats.batch)));
}

// op count x energy per op, per inference, zeros skipped (weights stored once per batch).
double modeled_joules(const ModelStats& stats, const measure::OpEnergyConstants& constants) {
  measure::OpCounts counts;
  counts.batch = stats.batch;
  counts.macs = effective_macs(stats) * stats.batch;
  for (const auto& l : stats.layers) {
    counts.weight_bytes += std::int64_t(double(l.weight_bytes) * nonzero_fraction(l));
    counts.activation_bytes += l.activation_bytes;
  }
  return measure::model_op_energy(constants, counts).joules;
}

std::string level_text(double level) { return format("%g%%", 100 * level); }

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

SensitivityReport analyze_sensitivity(const torch::jit::Module& input, const TensorDataset& test,
                                      const SensitivityOptions& options) {
  if (options.method != "magnitude" && options.method != "channel")
    throw UserError("sensitivity: " + option_ref("SensitivityOptions::method") + " '" + options.method +
                    "': choose magnitude or channel");
  if (options.levels.empty()) throw UserError("sensitivity: no levels given");
  for (double level : options.levels)
    if (!(level >= 0 && level < 1)) throw UserError("sensitivity: level " + level_text(level) + " must be in [0, 1)");

  torch::jit::Module module = input.clone();
  module.eval();
  SensitivityReport report;
  report.method = options.method;
  report.levels = options.levels;
  report.data = test.description;
  const auto constants = measure::default_op_energy_constants();
  report.energy_model = "op count x energy per op, zero weights skipped, per inference at batch " +
                        std::to_string(std::min<std::int64_t>(test.size(), 64)) + " (" + constants.source + ")";
  const auto example = test.input_tensors(0, std::min<std::int64_t>(test.size(), 64));

  auto stats = analyze_model(module, example);
  report.baseline_macs = effective_macs(stats);
  report.baseline_joules = modeled_joules(stats, constants);
  report.baseline_accuracy = evaluate(module, test).accuracy;

  if (options.method == "magnitude") {
    for (const auto& p : module.named_parameters(true))
      if (p.value.dim() >= 2 && p.name.size() > 7 && p.name.compare(p.name.size() - 7, 7, ".weight") == 0)
        report.layers.push_back(p.name.substr(0, p.name.size() - 7));
  } else {
    for (const auto& g : channel_groups(module)) {
      if (!g.blocked_by.empty()) continue;
      report.layers.push_back(join(g.producers, "+"));
    }
  }
  if (report.layers.empty())
    throw UserError("sensitivity: the model has nothing to prune with " + option_ref("SensitivityOptions::method") +
                    " " + options.method);

  PassContext context;
  context.progress = false;
  ProgressBar bar("sensitivity", std::int64_t(report.layers.size() * options.levels.size()), options.progress);
  std::int64_t done = 0;
  for (const auto& layer : report.layers) {
    for (double level : options.levels) {
      torch::jit::Module pruned;
      if (options.method == "magnitude") {
        MagnitudePruneOptions o;
        o.sparsity = level;
        o.layers.include = layer;
        o.layers.include_first_last = true;
        pruned = MagnitudePrunePass(o).run(module, context).module;
      } else {
        ChannelPruneOptions o;
        o.ratio = level;
        o.layers.include = layer.substr(0, layer.find('+'));
        try {
          pruned = ChannelPrunePass(o).run(module, context).module;
        } catch (const UserError&) {
          pruned = module;  // a level too small to remove a channel of this group: the model is unchanged
        }
      }
      SensitivityPoint point;
      point.layer = layer;
      point.level = level;
      point.accuracy = evaluate(pruned, test).accuracy;
      const auto pruned_stats = analyze_model(pruned, example);
      point.effective_macs = effective_macs(pruned_stats);
      point.modeled_joules = modeled_joules(pruned_stats, constants);
      report.points.push_back(point);
      bar.update(++done, format("%s at %s: %.2f%%", layer.c_str(), level_text(level).c_str(), 100 * point.accuracy.value));
    }
  }
  bar.finish(std::to_string(done) + " pruned models evaluated");
  return report;
}

void write_sensitivity_table(std::ostream& out, const SensitivityReport& report) {
  out << format("sensitivity (%s pruning, one layer at a time) on %s\n", report.method.c_str(), report.data.c_str());
  out << format("baseline: accuracy %.2f%% (95%% CI %.2f-%.2f), %lld effective MACs/inf, %.4g mJ/inf modeled\n\n",
                100 * report.baseline_accuracy.value, 100 * report.baseline_accuracy.low,
                100 * report.baseline_accuracy.high, (long long)report.baseline_macs, 1e3 * report.baseline_joules);
  out << format("%-36s %-7s %-9s %-9s %-13s %s\n", "layer", "level", "accuracy", "drop pt", "eff. MACs/inf",
                "mJ/inf MODELED (ops, zeros skipped)");
  for (const auto& p : report.points)
    out << format("%-36s %-7s %7.2f%%  %+7.2f   %-13lld %.4g\n", p.layer.c_str(), level_text(p.level).c_str(),
                  100 * p.accuracy.value, 100 * (report.baseline_accuracy.value - p.accuracy.value),
                  (long long)p.effective_macs, 1e3 * p.modeled_joules);
  out << "\nenergy: " << report.energy_model << "\n";
  if (report.method == "magnitude")
    out << "note: zeros are skipped only by a sparse runtime (lower-sparse); dense kernels spend the baseline's energy\n";
}

void write_sensitivity_csv(std::ostream& out, const SensitivityReport& report) {
  out << "layer,level,accuracy,accuracy_low,accuracy_high,effective_macs,modeled_joules,energy_provenance\n";
  out << "baseline,0," << report.baseline_accuracy.value << "," << report.baseline_accuracy.low << ","
      << report.baseline_accuracy.high << "," << report.baseline_macs << "," << report.baseline_joules
      << ",modeled\n";
  for (const auto& p : report.points)
    out << '"' << p.layer << "\"," << p.level << "," << p.accuracy.value << "," << p.accuracy.low << ","
        << p.accuracy.high << "," << p.effective_macs << "," << p.modeled_joules << ",modeled\n";
}

std::string sensitivity_svg(const SensitivityReport& report, const std::string& title) {
  const double width = 760, height = 440, left = 70, right = 230, top = 50, bottom = 60;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  double lowest = report.baseline_accuracy.value;
  for (const auto& p : report.points) lowest = std::min(lowest, p.accuracy.value);
  const double y_min = std::max(0.0, std::floor(lowest * 10 - 0.5) / 10), y_max = 1.0;
  const double x_max = *std::max_element(report.levels.begin(), report.levels.end());
  auto x_of = [&](double level) { return left + plot_w * (x_max > 0 ? level / x_max : 0); };
  auto y_of = [&](double acc) { return top + plot_h * (y_max - acc) / (y_max - y_min); };
  static const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << left << "\" y=\"28\" font-size=\"15\">" << escape_xml(title) << "</text>\n";
  // Axes and grid.
  for (int i = 0; i <= 5; ++i) {
    const double acc = y_min + (y_max - y_min) * i / 5;
    svg << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y_of(acc) << "\" y2=\"" << y_of(acc)
        << "\" stroke=\"#ddd\"/>\n";
    svg << "<text x=\"" << left - 8 << "\" y=\"" << y_of(acc) + 4 << "\" text-anchor=\"end\">"
        << std::lround(100 * acc) << "%</text>\n";
  }
  std::vector<double> ticks = report.levels;
  if (std::find(ticks.begin(), ticks.end(), 0.0) == ticks.end()) ticks.insert(ticks.begin(), 0.0);
  for (double level : ticks)
    svg << "<text x=\"" << x_of(level) << "\" y=\"" << top + plot_h + 18 << "\" text-anchor=\"middle\">"
        << level_text(level) << "</text>\n";
  svg << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top << "\" y2=\"" << top + plot_h
      << "\" stroke=\"black\"/>\n<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << top + plot_h
      << "\" y2=\"" << top + plot_h << "\" stroke=\"black\"/>\n";
  svg << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << height - 18 << "\" text-anchor=\"middle\">"
      << (report.method == "channel" ? "fraction of the group's channels removed" : "sparsity of the layer")
      << "</text>\n";
  svg << "<text transform=\"rotate(-90)\" x=\"" << -(top + plot_h / 2) << "\" y=\"18\" text-anchor=\"middle\">"
      << "test accuracy</text>\n";
  // Baseline.
  const double base = y_of(report.baseline_accuracy.value);
  svg << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << base << "\" y2=\"" << base
      << "\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n";
  for (std::size_t i = 0; i < report.layers.size(); ++i) {
    const char* color = colors[i % 10];
    std::string points = std::to_string(x_of(0)) + "," + std::to_string(base);
    for (const auto& p : report.points)
      if (p.layer == report.layers[i]) points += " " + std::to_string(x_of(p.level)) + "," + std::to_string(y_of(p.accuracy.value));
    svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"" << points << "\"/>\n";
    const double ly = top + 14 + 18 * double(i);
    svg << "<line x1=\"" << width - right + 15 << "\" x2=\"" << width - right + 35 << "\" y1=\"" << ly - 4
        << "\" y2=\"" << ly - 4 << "\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
    std::string label = report.layers[i];
    if (label.size() > 28) label = label.substr(0, 27) + "…";
    svg << "<text x=\"" << width - right + 40 << "\" y=\"" << ly << "\">" << escape_xml(label) << "</text>\n";
  }
  const double ly = top + 14 + 18 * double(report.layers.size());
  svg << "<line x1=\"" << width - right + 15 << "\" x2=\"" << width - right + 35 << "\" y1=\"" << ly - 4 << "\" y2=\""
      << ly - 4 << "\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\n<text x=\"" << width - right + 40 << "\" y=\""
      << ly << "\">unpruned</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace joulecut
