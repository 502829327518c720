#include "joulecut/measure/sweep.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/measure/measure_files.h"
#include "joulecut/model.h"
#include "joulecut/pass.h"
#include "joulecut/pipeline.h"
#include "joulecut/progress.h"
#include "joulecut/prune.h"
#include "joulecut/quantize.h"
#include "joulecut/text.h"

namespace joulecut::measure {
namespace {

using json = nlohmann::json;

DataSource data_source(const Recipe& recipe) { return recipe.data; }

// The TorchScript archive without joulecut's metadata: the same weights and code give the
// same hash whatever the command line or the time was.
std::string content_sha256(const torch::jit::Module& module) {
  std::ostringstream archive;
  module.save(archive);
  return sha256_hex(archive.str());
}

// Where stage k (from 1) of a point is written, named after the pass's registered name.
std::string stage_path(const std::string& stage_dir, int k, std::string pass_name) {
  for (char& c : pass_name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '-';
  return (std::filesystem::path(stage_dir) / ("stage-" + std::to_string(k) + "-" + pass_name + ".pt")).string();
}

std::string point_dir(const SweepOptions& options, bool single_pipeline, std::int64_t index) {
  if (single_pipeline) return options.output_dir;
  return (std::filesystem::path(options.output_dir) / format("point-%04lld", (long long)index)).string();
}


// The registered names of a pipeline's passes (aliases such as fold-bn resolved). Throws
// UserError for an unknown pass or option.
std::vector<std::string> pass_names_of(const std::vector<PassSpec>& passes) {
  std::vector<std::string> names;
  for (const auto& p : parse_pipeline(pipeline_text(passes))) names.push_back(p->name());
  return names;
}

// Why a point's passes do not build: the variant itself, else the first grid value that fails
// on its own, else the combination.
[[noreturn]] void explain_bad_point(const Recipe& recipe, const RecipePoint& point, const UserError& error) {
  const auto variant = std::find_if(recipe.variants.begin(), recipe.variants.end(),
                                    [&](const RecipeVariant& v) { return v.name == point.variant; });
  JOULECUT_ASSERT(variant != recipe.variants.end(), "a point comes from a variant of its recipe");
  try {
    pass_names_of(variant->passes);
  } catch (const UserError& e) {
    throw UserError(recipe.source + ": " + (recipe.variants.size() > 1 ? "variant " + variant->name + ": " : "") +
                    e.unrendered());
  }
  Recipe one = recipe;
  one.variants = {*variant};
  for (const auto& [key, value] : point.config) {
    try {
      pass_names_of(expand(one, {GridAxis{key, {value}}}).front().passes);
    } catch (const UserError& e) {
      throw UserError("grid key '" + key + "' value '" + value + "': " + e.unrendered());
    }
  }
  throw UserError("grid point #" + std::to_string(point.index) + " (" + point.label() + "): " + error.unrendered());
}

// Every pass of every point is built (and its options checked) before any work; returns each
// point's pass names.
// Every point's passes, built once: their names (for the stage files) and whether any trains.
struct CheckedPoints {
  std::vector<std::vector<std::string>> names;
  bool needs_training = false;
};

CheckedPoints check_points(const Recipe& recipe, const std::vector<RecipePoint>& points) {
  CheckedPoints checked;
  for (const auto& p : points) {
    try {
      const auto passes = parse_pipeline(pipeline_text(p.passes));
      std::vector<std::string> names;
      for (const auto& pass : passes) names.push_back(pass->name());
      checked.names.push_back(names);
      checked.needs_training = checked.needs_training || needs_training_data(passes);
    } catch (const UserError& e) {
      explain_bad_point(recipe, p, e);
    }
  }
  return checked;
}

struct Inputs {
  std::string content_sha256;
  PipelineInput data;  // the data sets, loaded once; the model is loaded afresh for every point
};

// A model's figures at every batch of a measurement.
std::vector<BatchFigures> batch_figures(const Report& report, const std::string& label) {
  std::vector<BatchFigures> out;
  for (const auto& r : report.runs) {
    if (r.label != label) continue;
    BatchFigures b;
    b.batch = r.batch;
    b.p50_seconds = r.p50_seconds;
    b.p50_low = r.p50_low;
    b.p50_high = r.p50_high;
    b.p99_seconds = r.p99_seconds;
    b.latency_seconds = r.latency_seconds;
    if (r.measured)
      b.meter = EnergyFigure{r.measured->joules_per_inference, provenance_name(r.measured->provenance), r.measured->meter,
                             "domains " + r.measured->domains};
    b.modeled_time_power = EnergyFigure{r.modeled_time_power.joules_per_inference, "modeled", "time x power",
                                        r.modeled_time_power.detail};
    b.modeled_ops = EnergyFigure{r.modeled_ops.joules_per_inference, "modeled", "ops", r.modeled_ops.detail};
    b.quality = r.quality;
    out.push_back(b);
  }
  return out;
}

// The harness settings a recipe asks for.
MeasureJob measure_job(const Recipe& recipe, bool progress) {
  MeasureJob job;
  job.data = data_source(recipe);
  job.batches = recipe.measure.batches;
  job.run.windows = recipe.measure.windows;
  job.run.device = recipe.measure.device;
  job.run.meter = recipe.measure.meter;
  job.run.warmup_seconds = recipe.measure.warmup_seconds;
  job.accuracy_limit = recipe.measure.accuracy_limit;
  job.metric = recipe.measure.metric;
  job.progress = progress;
  return job;
}

LedgerPoint run_point(const Recipe& recipe, const RecipePoint& point, const std::string& id, const std::string& stage_dir,
                      const Inputs& inputs, const SweepOptions& options) {
  // Loaded afresh for every point: clones name their classes after those already in the
  // model's compilation unit, so a point must not depend on the points run before it in
  // this process for its content hashes to match a resumed or sharded sweep's.
  PipelineInput input = inputs.data;
  input.loaded = load_model(recipe.model);
  ModelMetadata metadata = input.metadata;
  const auto passes = parse_pipeline(pipeline_text(point.passes));
  PassContext context = pass_context(input, point.seed, options.progress);
  const json point_fields = {{"recipe", recipe.name}, {"recipe_file", recipe.source}, {"sweep", id},
                             {"point", point.index},  {"config", point.label()}};
  LedgerPoint out;
  out.sweep_id = id;
  out.recipe = recipe.name;
  out.index = point.index;
  out.variant = point.variant;
  out.config = point.config;
  out.pipeline = print_pipeline(passes);
  out.seed = point.seed;

  StageFigures baseline;
  baseline.index = 0;
  baseline.name = "baseline";
  baseline.model_path = recipe.model;
  baseline.content_sha256 = inputs.content_sha256;
  out.stages.push_back(baseline);

  std::filesystem::create_directories(stage_dir);
  std::vector<std::string> applied;
  std::vector<PassReport> reports;  // so far: each stage's file carries the warnings of the passes before it
  PassHooks hooks;
  hooks.before = [&](std::size_t i, const Pass& pass) {
    if (options.progress) std::fprintf(stderr, "  stage %zu/%zu: %s\n", i + 1, passes.size(), pass.text().c_str());
  };
  hooks.after = [&](std::size_t i, const Pass& pass, const PassResult& result) {
    if (options.on_pass_report) options.on_pass_report(result.report);
    applied.push_back(pass.text());
    reports.push_back(result.report);
    json stage_fields = point_fields;
    stage_fields["stage"] = i + 1;
    stage_fields["passes_applied"] = join(applied, ",");
    metadata.provenance_json =
        pipeline_provenance(options.command, out.pipeline, point.seed, input, stage_fields.dump(), reports);
    const std::string path = stage_path(stage_dir, int(i + 1), pass.name());
    save_model(result.module, metadata, path, recipe.model);
    StageFigures stage;
    stage.index = int(i + 1);
    stage.name = pass.text();
    stage.passes_applied = join(applied, ",");
    stage.model_path = path;
    stage.content_sha256 = content_sha256(result.module);
    out.stages.push_back(stage);
  };
  apply_passes(passes, input.loaded.module, context, hooks);

  if (options.measure) {
    MeasureJob job = measure_job(recipe, options.progress);
    for (const auto& s : out.stages) job.models.push_back(s.model_path);
    const Report report = measure_files(job);
    JOULECUT_ASSERT(report.models.size() == out.stages.size(), "one summary per stage");
    for (std::size_t i = 0; i < out.stages.size(); ++i) {
      StageFigures& s = out.stages[i];
      const ModelSummary& m = report.models[i];
      s.parameters = m.parameters;
      s.file_bytes = m.file_bytes;
      s.macs_per_inference = m.macs_per_inference;
      s.accuracy = m.accuracy;
      s.accuracy_data = m.accuracy_data;
      if (m.fidelity) {
        s.agreement = m.fidelity->agreement;
        s.cosine = m.fidelity->cosine.mean;
        s.snr_db = m.fidelity->snr_db;
      }
      s.batches = batch_figures(report, m.label);
    }
    out.manifest = report.manifest;
  } else {
    // Sizes and accuracy only make sense measured; without the harness the ledger records
    // what the passes produced.
    for (auto& s : out.stages) s.file_bytes = std::int64_t(file_size_bytes(s.model_path));
  }
  out.manifest.entries.emplace_back("recipe", recipe.name + " (" + recipe.source + ")");
  out.manifest.entries.emplace_back("sweep", id);
  out.manifest.entries.emplace_back("pipeline", out.pipeline);
  out.manifest.entries.emplace_back("pipeline_seed", std::to_string(point.seed));
  out.manifest.entries.emplace_back("model_sha256", input.sha256);
  return out;
}

// Options that name files (distill<teacher=...>) are read, like the recipe's model and data,
// from the recipe's folder when relative.
std::vector<RecipePoint> with_recipe_paths(std::vector<RecipePoint> points, const Recipe& recipe) {
  if (recipe.source == kInlineRecipeSource) return points;  // written on the command line: relative to the shell
  const std::filesystem::path base = std::filesystem::path(recipe.source).parent_path();
  for (auto& point : points)
    for (auto& pass : point.passes) {
      std::vector<OptionInfo> options;
      try {
        options = pass_options(pass.name);
      } catch (const UserError&) {
        continue;  // an unknown pass: check_points says so, with its variant
      }
      for (const auto& info : options)
        for (auto& [key, value] : pass.options)
          if (key == info.name && info.type == OptionType::path && !value.empty() &&
              std::filesystem::path(value).is_relative())
            value = (base / value).lexically_normal().string();
    }
  return points;
}

SweepResult sweep_points(const Recipe& recipe, const std::vector<GridAxis>& grid, const SweepOptions& options,
                         bool single_pipeline) {
  const auto points = with_recipe_paths(expand(recipe, grid), recipe);
  const auto checked = check_points(recipe, points);
  const auto& pass_names = checked.names;
  if (std::filesystem::exists(options.output_dir) && !std::filesystem::is_directory(options.output_dir))
    throw UserError(options.output_dir + ": exists and is not a directory");
  for (const auto& p : points)
    for (std::size_t k = 0; k < pass_names[std::size_t(p.index)].size(); ++k)
      refuse_to_overwrite_input(recipe.model, stage_path(point_dir(options, single_pipeline, p.index), int(k + 1),
                                                         pass_names[std::size_t(p.index)][k]));
  const std::string ledger = (std::filesystem::path(options.output_dir) / "ledger.jsonl").string();
  // One writer per directory: two processes would each run every point and append it twice.
  std::filesystem::create_directories(options.output_dir);
  const DirectoryLock lock(options.output_dir, "sweep's ledger");
  Inputs inputs;
  {
    // A bad model fails before the data is read; the training split is read only when a pass
    // of some point trains or calibrates.
    inputs.data = load_pipeline_input(recipe.model, data_source(recipe), checked.needs_training, /*with_test=*/true);
    inputs.content_sha256 = content_sha256(inputs.data.loaded.module);
  }
  const std::string id = sweep_id(recipe, inputs.data.sha256, grid);

  SweepResult result;
  result.ledger = ledger;
  result.points = std::int64_t(points.size());
  std::vector<bool> done(points.size(), false);
  if (std::filesystem::exists(ledger)) {
    if (!options.resume)
      throw UserError(ledger + " exists (an earlier run): add " + option_ref("SweepOptions::resume") +
                      " to continue it, or choose another " + option_ref("SweepOptions::output_dir") + " directory");
    LedgerContents contents = read_ledger(ledger);
    result.in_ledger = contents.points;
    for (const auto& p : contents.points) {
      if (p.sweep_id != id)
        throw UserError(ledger + ": point " + std::to_string(p.index) + " is from another sweep (" + p.sweep_id + ", recipe " +
                        p.recipe + "); this one is " + id +
                        " (the recipe, its model or the grid changed): use another " +
                        option_ref("SweepOptions::output_dir") + " directory");
      if (p.index >= 0 && p.index < std::int64_t(done.size())) done[std::size_t(p.index)] = true;
    }
    if (contents.torn_tail) drop_torn_tail(ledger, contents.good_bytes);
    result.problems = contents.problems;
  }
  std::filesystem::create_directories(options.output_dir);

  std::vector<const RecipePoint*> todo;
  for (const auto& p : points) {
    if (!options.shard.owns(p.index)) ++result.other_shards;
    else if (done[std::size_t(p.index)]) ++result.already_done;
    else todo.push_back(&p);
  }
  if (options.progress && (result.already_done > 0 || result.other_shards > 0))
    std::fprintf(stderr, "sweep %s: %lld points; %lld already in %s, %lld in other shards, %zu to run\n", id.c_str(),
                 (long long)result.points, (long long)result.already_done, ledger.c_str(), (long long)result.other_shards,
                 todo.size());
  ProgressBar bar("sweep " + recipe.name, std::int64_t(todo.size()), options.progress && todo.size() > 1);
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const RecipePoint& p = *todo[i];
    if (options.progress && !single_pipeline)
      std::fprintf(stderr, "point %zu/%zu: #%lld %s\n", i + 1, todo.size(), (long long)p.index, p.label().c_str());
    result.in_ledger.push_back(run_point(recipe, p, id, point_dir(options, single_pipeline, p.index), inputs, options));
    append_to_ledger(ledger, result.in_ledger.back());
    ++result.ran;
    bar.update(std::int64_t(i + 1), "#" + std::to_string(p.index) + " done");
  }
  if (todo.size() > 1) bar.finish(std::to_string(todo.size()) + " points");
  result.table = options.measure && result.other_shards == 0 && result.in_ledger.size() > 1
                     ? measure_table_side_by_side(recipe, result.in_ledger, options.table_all_stages, options.progress)
                     : result.in_ledger;
  return result;
}

}  // namespace

std::vector<LedgerPoint> measure_table_side_by_side(const Recipe& recipe, const std::vector<LedgerPoint>& points,
                                                    bool all_stages, bool progress) {
  JOULECUT_ASSERT(!points.empty(), "a table has points");
  std::vector<LedgerPoint> table = points;
  // Which stages the table shows, in the order they are measured (after the baseline).
  std::vector<StageFigures*> shown;
  for (auto& p : table) {
    if (p.stages.front().batches.empty())
      throw UserError("point #" + std::to_string(p.index) +
                      " of the ledger was not measured: rerun the sweep without " +
                      option_ref("SweepOptions::measure"));
    for (std::size_t s = 1; s < p.stages.size(); ++s)
      if (all_stages || s + 1 == p.stages.size()) shown.push_back(&p.stages[s]);
  }
  MeasureJob job = measure_job(recipe, progress);
  job.accuracy_limit = -1;  // accuracy and fidelity: the ledger's, computed on the same data
  job.metric = "top1";
  job.models.push_back(recipe.model);
  for (const StageFigures* s : shown) {
    if (!std::filesystem::exists(s->model_path))
      throw UserError(s->model_path + ": the stage model is gone, so the table cannot be measured again side by side; "
                      "rerun the sweep into a fresh " + option_ref("SweepOptions::output_dir") + " directory");
    job.models.push_back(s->model_path);
  }
  if (progress)
    std::fprintf(stderr, "the table's %zu rows, measured again side by side in one run (windows interleaved)\n",
                 job.models.size());
  const Report report = measure_files(job);
  JOULECUT_ASSERT(report.models.size() == shown.size() + 1, "one summary per model measured");
  const std::vector<BatchFigures> baseline = batch_figures(report, report.models.front().label);
  for (std::size_t i = 0; i < shown.size(); ++i) shown[i]->batches = batch_figures(report, report.models[i + 1].label);
  for (auto& p : table) {
    p.stages.front().batches = baseline;
    Manifest manifest = report.manifest;
    for (const char* key : {"recipe", "sweep", "pipeline", "pipeline_seed", "model_sha256"})
      if (!p.manifest.get(key).empty()) manifest.set(key, p.manifest.get(key));
    manifest.set("table_measurement", "the table's " + std::to_string(job.models.size()) +
                                          " rows measured again side by side in one run after the sweep, windows "
                                          "interleaved; every point's own run (its stages beside its baseline) is in the ledger");
    if (!all_stages)
      for (std::size_t s = 1; s + 1 < p.stages.size(); ++s) p.stages[s].batches.clear();  // not in this run: not shown
    p.manifest = manifest;
  }
  return table;
}

SweepResult run_sweep(const Recipe& recipe, const SweepOptions& options) {
  return sweep_points(recipe, parse_grid(options.grid.empty() ? recipe.grid : options.grid), options, false);
}

SweepResult run_recipe(const Recipe& recipe, const SweepOptions& options) {
  if (recipe.variants.size() != 1)
    throw UserError(recipe.source + ": has " + std::to_string(recipe.variants.size()) +
                    " variants; `compress run` applies one pipeline: use `compress sweep` for several");
  return sweep_points(recipe, {}, options, true);
}

std::string default_search_space(const Recipe& recipe) {
  std::string space;
  LoadedModel model = load_model(recipe.model);
  // The layers with weights, in order: the first and last are the usual fp32 candidates.
  std::vector<std::string> layers;
  for (const auto& p : model.module.named_parameters(/*recurse=*/true)) {
    const auto dot = p.name.rfind(".weight");
    if (dot != std::string::npos && dot + 7 == p.name.size() && (p.value.dim() == 2 || p.value.dim() == 4))
      layers.push_back(p.name.substr(0, dot));
  }
  for (const auto& variant : recipe.variants) {
    const auto names = pass_names_of(variant.passes);
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string& name = names[i];
      const std::string key = std::to_string(i + 1) + ".";
      std::string axis;
      if (name == MagnitudePrunePass::kName) axis = key + "sparsity=0.5,0.7,0.8,0.9";
      else if (name == ChannelPrunePass::kName) axis = key + "ratio=0.25,0.5,0.75";
      else if ((name == StaticQuantizePass::kName || name == DynamicQuantizePass::kName) && layers.size() >= 2)
        axis = key + "exclude=," + layers.front() + "," + layers.back() + "," + layers.front() + "|" + layers.back();
      if (!axis.empty() && space.find(axis) == std::string::npos) space += (space.empty() ? "" : " ") + axis;
    }
  }
  if (space.empty())
    throw UserError(recipe.source + ": nothing to search: no prune-magnitude, prune-channel or int8 pass; give " +
                    option_ref("SweepOptions::grid") +
                    " or "
                    "a 'search' key");
  return space;
}

SearchResult run_search(const Recipe& recipe, const SearchOptions& options) {
  if (options.minimize != "energy" && options.minimize != "latency" && options.minimize != "size" &&
      options.minimize != "macs")
    throw UserError(option_ref("SearchOptions::minimize") + " '" + options.minimize +
                    "': choose energy, latency, size or macs");
  if (!(options.max_accuracy_drop >= 0))
    throw UserError(option_ref("SearchOptions::max_accuracy_drop") + " must be >= 0 (percentage points)");
  if (!options.sweep.measure) throw UserError("a search compares measured figures: it cannot run without measuring");
  if (options.metric != "top1" && options.metric != "agreement")
    throw UserError(option_ref("SearchOptions::metric") + " '" + options.metric +
                    "': a search's budget is on top1 (accuracy) or agreement (with the "
                    "baseline, label-free)");
  SearchResult out;
  out.space = !options.sweep.grid.empty() ? options.sweep.grid : !recipe.search.empty() ? recipe.search : default_search_space(recipe);
  SweepOptions sweep = options.sweep;
  sweep.grid = out.space;
  out.sweep = run_sweep(recipe, sweep);
  double best_cost = 0;
  // Chosen on the side-by-side figures the table prints, so the best is the table's best.
  for (const auto& p : out.sweep.table) {
    const StageFigures& base = p.stages.front();
    const StageFigures& last = p.stages.back();
    // The budget: accuracy points below the baseline, or (no labels, or --metric agreement)
    // points of top-1 agreement with it, the baseline agreeing with itself fully.
    const bool on_agreement = options.metric == "agreement" || !base.accuracy;
    if (on_agreement) {
      if (p.stages.size() > 1 && !last.agreement) continue;
      const double agreement = p.stages.size() > 1 ? last.agreement->value : 1.0;
      if (100 * (1.0 - agreement) > options.max_accuracy_drop) continue;
    } else {
      if (!last.accuracy) continue;
      if (100 * (base.accuracy->value - last.accuracy->value) > options.max_accuracy_drop) continue;
    }
    const std::int64_t batch = options.batch > 0 ? options.batch : last.batches.front().batch;
    const BatchFigures* b = last.at_batch(batch);
    if (!b)
      throw UserError(option_ref("SearchOptions::batch") + " " + std::to_string(batch) +
                      ": the recipe did not measure it");
    double cost = options.minimize == "energy"    ? b->energy().joules_per_inference.mean
                  : options.minimize == "latency" ? b->p50_seconds
                  : options.minimize == "size"    ? double(last.file_bytes)
                                                  : double(last.macs_per_inference);
    if (!out.best || cost < best_cost) {
      out.best = p;
      best_cost = cost;
    }
  }
  return out;
}

}  // namespace joulecut::measure
