#pragma once
// Recipes: a model, a data set, passes in order (one pipeline, or several named variants),
// measurement settings and a seed, in one YAML or JSON file, so that a table in a paper can
// be regenerated from it. Grids expand a recipe into points for sweeps and searches.
// Torch-free: pass names and options are checked by parse_pipeline (pass.h) before any work.
//
//   name: lenet5-sparse-int8
//   model: ../models/trained/lenet5.pt      # relative to the recipe file
//   data: fashion-mnist                     # any --data form; or images: + labels:; train-data:, test-data:
//   input-shape: "3,32,32"                  # and input-dtype, input-range, model-output, resize, crop,
//                                           # mean, std, color, cache-mb: as the flags of the same names
//   seed: 1
//   passes: "prune-magnitude<sparsity=0.9>,quantize-int8"   # or a list; or variants: {name: passes}
//   measure: {batches: [1, 64], windows: 5, device: cpu, meter: auto, warmup-seconds: 0.5,
//             accuracy-limit: 0}
//   grid: "prune.sparsity=0.5,0.7,0.9"     # the default grid of `compress sweep`
//   search: "prune.sparsity=0.5,0.7,0.8,0.9"  # the default space of `compress search`
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "joulecut/data_source.h"
#include "joulecut/pipeline_text.h"

namespace joulecut {

struct RecipeMeasurement {
  std::vector<std::int64_t> batches{64};
  int windows = 5;
  std::string device = "cpu";
  std::string meter = "auto";
  double warmup_seconds = 0.5;
  std::int64_t accuracy_limit = 0;  // evaluate on the first N test images; 0: all
  std::string metric = "auto";      // top1 | agreement | cosine | snr | auto (as compress measure --metric)
};

struct RecipeVariant {
  std::string name;
  std::vector<PassSpec> passes;
};

// Recipe::source of a pipeline written inline (inline_recipe). The text is what ledgers have
// always recorded for such sweeps, so it stays as it was.
inline constexpr const char* kInlineRecipeSource = "--passes";

struct Recipe {
  std::string name;
  std::string source;       // the file it came from, or kInlineRecipeSource
  std::string model;        // resolved path
  std::string model_as_written;
  DataSource data;  // data, images, labels, train-data, test-data resolved; the input spec and preprocessing
  std::uint64_t seed = 1;
  std::vector<RecipeVariant> variants;  // at least one
  RecipeMeasurement measure;
  std::string grid, search;             // defaults for sweep and search ("" = none)
  // The recipe as canonical JSON with paths as written (not as resolved), so that a clone in
  // another directory, or another machine of a cluster, has the same identity.
  std::string canonical_json() const;
};

// Reads a .yaml/.yml or .json recipe. Throws UserError naming the file and the key for a
// missing file, bad syntax, an unknown key (with "did you mean"), or a bad value.
Recipe load_recipe(const std::string& path);

// A recipe made of a model and a pipeline given on the command line.
Recipe inline_recipe(const std::string& model, const std::string& passes);

// One axis of a grid: "prune.sparsity=0.5,0.7,0.9". The key names a pass of the recipe (its
// name, a unique prefix such as "prune" or "quant", or its 1-based position) and one of its
// options; or it is "seed".
struct GridAxis {
  std::string key;
  std::vector<std::string> values;
};
// Axes separated by spaces (or ';'), values by commas. Throws UserError on bad syntax.
std::vector<GridAxis> parse_grid(const std::string& text);

// One configuration to run: a variant with grid values applied.
struct RecipePoint {
  std::int64_t index = 0;                                   // position in the expansion
  std::string variant;
  std::vector<std::pair<std::string, std::string>> config;  // grid key -> value
  std::vector<PassSpec> passes;
  std::uint64_t seed = 1;
  std::string label() const;  // "variant key=value ..." (just the variant without a grid)
};

// Every variant crossed with every combination of the axes (the last axis varies fastest).
// Throws UserError for a key that names no pass of a variant, or an ambiguous one.
std::vector<RecipePoint> expand(const Recipe& recipe, const std::vector<GridAxis>& grid);

// The identity of a sweep: the recipe's canonical JSON, the model's SHA-256 and the grid.
std::string sweep_id(const Recipe& recipe, const std::string& model_sha256, const std::vector<GridAxis>& grid);

// "--shard i/N": 1 <= i <= N. Point k belongs to shard (k mod N) + 1.
struct Shard {
  int index = 1, count = 1;
  bool owns(std::int64_t point) const { return point % count == index - 1; }
};
Shard parse_shard(const std::string& text);

}  // namespace joulecut
