#include <catch2/catch.hpp>

#include <fstream>
#include <set>

#include "joulecut/error.h"
#include "joulecut/recipe.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;
using joulecut::UserError;

namespace {
std::string write(const TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.file(name)) << text;
  return dir.file(name);
}
}  // namespace

TEST_CASE("a YAML recipe and the same recipe in JSON read alike", "[recipe]") {
  TempDir dir;
  const auto yaml = write(dir, "r.yaml", R"(
name: demo
model: models/m.pt
seed: 7
variants:
  zeta: "prune-magnitude<sparsity=0.9>,quantize-int8"
  alpha:
    - prune-channel: {ratio: 0.25, finetune-epochs: 1}
    - fold-bn
measure: {batches: [1, 64], windows: 3, accuracy-limit: 500}
grid: "prune.sparsity=0.5,0.9"
)");
  const auto json = write(dir, "r.json", R"({"name": "demo", "model": "models/m.pt", "seed": 7,
    "variants": {"zeta": "prune-magnitude<sparsity=0.9>,quantize-int8",
                 "alpha": [{"prune-channel": {"ratio": 0.25, "finetune-epochs": 1}}, "fold-bn"]},
    "measure": {"batches": [1, 64], "windows": 3, "accuracy-limit": 500}, "grid": "prune.sparsity=0.5,0.9"})");
  const auto a = joulecut::load_recipe(yaml);
  const auto b = joulecut::load_recipe(json);
  CHECK(a.canonical_json() == b.canonical_json());
  REQUIRE(a.variants.size() == 2);
  CHECK(a.variants[0].name == "zeta");  // the file's order, not sorted
  CHECK(joulecut::pipeline_text(a.variants[1].passes) == "prune-channel<ratio=0.25,finetune-epochs=1>,fold-bn");
  CHECK(a.model == (dir.path / "models/m.pt").string());  // relative to the recipe
  CHECK(a.model_as_written == "models/m.pt");
  CHECK(a.seed == 7);
  CHECK(a.measure.batches == std::vector<std::int64_t>{1, 64});
  CHECK(a.measure.windows == 3);
  CHECK(a.measure.accuracy_limit == 500);
}

TEST_CASE("recipe errors name the file and the key", "[recipe]") {
  TempDir dir;
  CHECK_THROWS_WITH(joulecut::load_recipe(dir.file("none.yaml")), Contains("none.yaml: cannot open recipe"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "a.yaml", "model: m.pt\npases: fold-bn\n")),
                    Contains("a.yaml: unknown key 'pases' (did you mean 'passes'?)"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "b.yaml", "model: m.pt\n")), Contains("b.yaml: give either 'passes'"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "c.yaml", "model: [m.pt\n")), Contains("c.yaml: not valid YAML (line"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "d.json", "{\"model\": ")), Contains("d.json: not valid JSON"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "e.yaml", "model: m.pt\npasses: x\nmeasure: {windows: 1}\n")),
                    Contains("e.yaml: measure.windows must be an integer >= 2"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "f.txt", "model: m.pt\n")), Contains("a .yaml, .yml or .json"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "g.yaml", "model: m.pt\npasses: x\ngrid: sparsity=1\n")),
                    Contains("g.yaml: grid key 'sparsity' must be PASS.OPTION"));
}

TEST_CASE("grids expand into every combination, the last axis fastest", "[recipe]") {
  auto recipe = joulecut::inline_recipe("m.pt", "prune-magnitude<sparsity=0.5>,quantize-int8");
  const auto grid = joulecut::parse_grid("prune.sparsity=0.5,0.7,0.9 quant.observer=minmax,entropy seed=1,2");
  const auto points = joulecut::expand(recipe, grid);
  REQUIRE(points.size() == 12);
  CHECK(points[0].label() == "prune.sparsity=0.5 quant.observer=minmax seed=1");
  CHECK(points[1].seed == 2);
  CHECK(joulecut::pipeline_text(points[11].passes) == "prune-magnitude<sparsity=0.9>,quantize-int8<observer=entropy>");
  std::set<std::string> distinct;
  for (const auto& p : points) distinct.insert(p.label());
  CHECK(distinct.size() == 12);
  // By position, and a value that is empty (no layer kept in fp32).
  const auto by_position = joulecut::expand(recipe, joulecut::parse_grid("2.exclude=,conv1"));
  REQUIRE(by_position.size() == 2);
  CHECK(by_position[0].passes[1].text() == "quantize-int8<exclude=>");
  // No grid: one point per variant.
  CHECK(joulecut::expand(recipe, {}).size() == 1);
}

TEST_CASE("grid keys that name no pass, or several, are errors", "[recipe]") {
  auto recipe = joulecut::inline_recipe("m.pt", "prune-magnitude,prune-nm,quantize-int8");
  CHECK_THROWS_WITH(joulecut::expand(recipe, joulecut::parse_grid("prune.sparsity=0.5")),
                    Contains("'prune' matches several passes") && Contains("1.sparsity"));
  CHECK_THROWS_WITH(joulecut::expand(recipe, joulecut::parse_grid("distil.epochs=1")), Contains("no pass 'distil'"));
  CHECK_THROWS_WITH(joulecut::parse_grid("prune.sparsity"), Contains("must be key=value"));
  CHECK_THROWS_WITH(joulecut::parse_grid("a.b=1 a.b=2"), Contains("given twice"));
  CHECK_THROWS_WITH(joulecut::expand(recipe, joulecut::parse_grid("seed=x")), Contains("not a seed"));
}

TEST_CASE("shards split the points exactly once between them", "[recipe]") {
  CHECK_THROWS_WITH(joulecut::parse_shard("3/2"), Contains("between 1 and 2"));
  CHECK_THROWS_WITH(joulecut::parse_shard("0/2"), Contains("between 1 and 2"));
  CHECK_THROWS_WITH(joulecut::parse_shard("1/0"), Contains("at least 1"));
  CHECK_THROWS_WITH(joulecut::parse_shard("2"), Contains("write i/N"));
  CHECK_THROWS_WITH(joulecut::parse_shard("1/2x"), Contains("write i/N"));
  const auto a = joulecut::parse_shard("1/3"), b = joulecut::parse_shard("2/3"), c = joulecut::parse_shard("3/3");
  for (std::int64_t k = 0; k < 20; ++k) CHECK(int(a.owns(k)) + int(b.owns(k)) + int(c.owns(k)) == 1);
}

TEST_CASE("a sweep's identity follows the recipe, the model and the grid", "[recipe]") {
  const auto recipe = joulecut::inline_recipe("m.pt", "prune-magnitude");
  const auto grid = joulecut::parse_grid("prune.sparsity=0.5,0.9");
  const auto id = joulecut::sweep_id(recipe, "aa", grid);
  CHECK(id == joulecut::sweep_id(recipe, "aa", grid));
  CHECK(id != joulecut::sweep_id(recipe, "bb", grid));
  CHECK(id != joulecut::sweep_id(recipe, "aa", joulecut::parse_grid("prune.sparsity=0.5")));
  auto other = recipe;
  other.measure.windows = 9;
  CHECK(id != joulecut::sweep_id(other, "aa", grid));
}

TEST_CASE("did you mean: typos, not other words", "[recipe]") {
  CHECK(joulecut::did_you_mean("sparsty", {"sparsity", "scope"}) == " (did you mean 'sparsity'?)");
  CHECK(joulecut::did_you_mean("prune-magnitud", {"prune-nm", "prune-magnitude"}) == " (did you mean 'prune-magnitude'?)");
  CHECK(joulecut::did_you_mean("temperature", {"epochs", "alpha"}).empty());
}

TEST_CASE("pipeline text round-trips and rejects bad syntax", "[recipe]") {
  const auto passes = joulecut::parse_pipeline_text("a<k=v,x=1>, b ,c<>");
  REQUIRE(passes.size() == 3);
  CHECK(joulecut::pipeline_text(passes) == "a<k=v,x=1>,b,c");
  CHECK_THROWS_WITH(joulecut::parse_pipeline_text("a<k=v"), Contains("unbalanced '<'"));
  CHECK_THROWS_WITH(joulecut::parse_pipeline_text("a,,b"), Contains("empty pass"));
  CHECK_THROWS_WITH(joulecut::parse_pipeline_text("a<k>"), Contains("must be key=value"));
  CHECK_THROWS_WITH(joulecut::parse_pipeline_text("a<k=1,k=2>"), Contains("given twice"));
}

TEST_CASE("a recipe takes the data flags' keys: input spec, splits, image preprocessing", "[recipe]") {
  TempDir dir;
  const auto path = write(dir, "r.yaml", R"(
model: m.pt
data: images
test-data: held-out
input-shape: "3,224,224"
model-output: "logits"
resize: 256
crop: 224
mean: "0.485,0.456,0.406"
std: "0.229,0.224,0.225"
cache-mb: 512
passes: "prune-magnitude<sparsity=0.5>"
)");
  const auto r = joulecut::load_recipe(path);
  CHECK(r.data.data == dir.file("images"));  // relative to the recipe
  CHECK(r.data.test_data == dir.file("held-out"));
  CHECK(r.data.data_given);
  CHECK(r.data.input_shape == "3,224,224");
  CHECK(r.data.output == "logits");
  CHECK(r.data.resize == 256);
  CHECK(r.data.crop == 224);
  CHECK(r.data.mean == "0.485,0.456,0.406");
  CHECK(r.data.cache_mb == 512);
  CHECK_THAT(r.canonical_json(), Contains("\"input-shape\":\"3,224,224\""));
  // Without the new keys, the identity of an earlier recipe (its sweep folder) is unchanged.
  const auto plain = joulecut::load_recipe(write(dir, "p.yaml", "model: m.pt\npasses: fold-bn\n"));
  CHECK_THAT(plain.canonical_json(), !Contains("input-shape"));
  CHECK_THROWS_WITH(joulecut::load_recipe(write(dir, "bad.yaml", "model: m.pt\npasses: fold-bn\nresize: -3\n")),
                    Contains("resize"));
}
