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
  const auto given = [&o](const char* flag) {
    const auto it = o.data_flags.find(flag);
    return it != o.data_flags.end() && it->second->count() > 0;
  };
  DataSource& d = recipe.data;
  if (given("--data")) {
    d.data = o.data.data;
    d.data_given = true;
  }
  if (given("--images") || given("--labels")) {
    d.images = o.data.images;
    d.labels = o.data.labels;
  }
  const std::pair<const char*, std::string DataSource::*> texts[] = {
      {"--train-data", &DataSource::train_data}, {"--test-data", &DataSource::test_data},
      {"--input-shape", &DataSource::input_shape}, {"--input-dtype", &DataSource::input_dtype},
      {"--input-range", &DataSource::input_range}, {"--model-output", &DataSource::output},
      {"--mean", &DataSource::mean},             {"--std", &DataSource::stddev}, {"--color", &DataSource::color}};
  for (const auto& [flag, field] : texts)
    if (given(flag)) d.*field = o.data.*field;
  if (given("--resize")) d.resize = o.data.resize;
  if (given("--crop")) d.crop = o.data.crop;
  if (given("--cache-mb")) d.cache_mb = o.data.cache_mb;
  if (o.seed_given) recipe.seed = o.seed;
  return recipe;
}

void add_recipe_overrides(CLI::App* app, RecipeOverrides& o) {
  app->add_option("--batch", o.batches, "Batch sizes for the measurement (default: the recipe's, else 64)");
  app->add_option("--windows", o.windows, "Measurement windows (default: the recipe's, else 5)")->check(CLI::Range(2, 100000));
  app->add_option("--seed", o.seed, "Seed for the passes that train (default: the recipe's, else 1)")
      ->each([&o](const std::string&) { o.seed_given = true; });
  // The data flags of every subcommand; each one given replaces the recipe's key of the same name.
  add_data_options(app, o.data);
  for (const char* flag : {"--data", "--images", "--labels", "--train-data", "--test-data", "--input-shape", "--input-dtype",
                           "--input-range", "--model-output", "--resize", "--crop", "--mean", "--std", "--color", "--cache-mb"})
    o.data_flags[flag] = app->get_option(flag);
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
  if (measure::has_quality(table)) {
    for (const auto& plot : measure::write_tradeoff_plots(table, base.string())) written.push_back(plot);
  } else {
    std::printf("\nno plots: they draw accuracy (or agreement) against cost, and no row has either (synthetic input)\n");
  }
  std::printf("\nwrote");
  for (const auto& w : written) std::printf(" %s", w.c_str());
  std::printf("\n");
}

}  // namespace joulecut::cli
