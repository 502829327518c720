#include "experiment.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"

namespace joulecut::cli {
namespace {

bool is_recipe_file(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

std::string short_number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

Recipe recipe_for(const std::string& model_or_recipe, const RecipeOverrides& o, bool needs_passes) {
  Recipe recipe;
  if (is_recipe_file(model_or_recipe)) {
    if (!o.passes.empty())
      throw UserError(model_or_recipe + ": --passes is for a model file; a recipe names its passes (edit 'passes:')");
    recipe = load_recipe(model_or_recipe);
  } else {
    if (needs_passes && o.passes.empty())
      throw UserError(model_or_recipe + ": give --passes \"pass<k=v>,...\" with a model, or a recipe file (.yaml, .json)");
    if (!needs_passes)
      throw UserError(model_or_recipe + ": not a recipe (.yaml, .yml or .json); sweeps and searches run recipes");
    recipe = inline_recipe(model_or_recipe, o.passes);
  }
  if (!o.batches.empty()) recipe.measure.batches = parse_batches(o.batches);
  if (o.windows > 0) recipe.measure.windows = o.windows;
  if (!o.data.empty()) recipe.data = o.data;
  if (!o.images.empty() || !o.labels.empty()) {
    recipe.images = o.images;
    recipe.labels = o.labels;
  }
  if (o.seed_given) recipe.seed = o.seed;
  return recipe;
}

void add_recipe_overrides(CLI::App* app, RecipeOverrides& o) {
  app->add_option("--batch", o.batches, "Batch sizes for the measurement (default: the recipe's, else 64)");
  app->add_option("--windows", o.windows, "Measurement windows (default: the recipe's, else 5)")->check(CLI::Range(2, 100000));
  app->add_option("--seed", o.seed, "Seed for the passes that train (default: the recipe's, else 1)")
      ->each([&o](const std::string&) { o.seed_given = true; });
  app->add_option("--data", o.data, "fashion-mnist, or a directory of IDX files (default: the recipe's)");
  app->add_option("--images", o.images, "IDX images file (with --labels)");
  app->add_option("--labels", o.labels, "IDX labels file (with --images)");
}

measure::SweepOptions sweep_options(const ExperimentCliOptions& o, const std::string& command) {
  measure::SweepOptions s;
  s.grid = o.grid;
  s.output_dir = o.output_dir;
  s.resume = o.resume;
  s.shard = parse_shard(o.shard);
  s.measure = !o.no_measure;
  s.progress = !o.no_progress;
  s.command = command;
  return s;
}

void write_tradeoff_outputs(const std::vector<measure::LedgerPoint>& points, const std::string& dir, const std::string& name,
                            const measure::TradeoffOptions& options) {
  const measure::TradeoffTable table = measure::tradeoff_table(points, options);
  const std::filesystem::path base = std::filesystem::path(dir) / name;
  std::vector<std::string> written;
  for (const auto& [format, ext] : std::vector<std::pair<std::string, std::string>>{
           {"table", "txt"}, {"csv", "csv"}, {"markdown", "md"}, {"latex", "tex"}, {"json", "json"}}) {
    std::ostringstream text;
    measure::write_tradeoff(text, table, format);
    if (format == "table") std::fputs(text.str().c_str(), stdout);
    const std::string path = base.string() + "." + ext;
    write_file_atomic(path, text.str());
    written.push_back(path);
  }
  for (const auto& plot : measure::write_tradeoff_plots(table, base.string())) written.push_back(plot);
  std::printf("\nwrote");
  for (const auto& w : written) std::printf(" %s", w.c_str());
  std::printf("\n");
}

}  // namespace joulecut::cli
