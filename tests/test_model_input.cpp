// Synthetic inputs from a spec, where a model's spec comes from, and output selection.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/model_input.h"

using namespace joulecut;
using Catch::Matchers::Contains;

TEST_CASE("synthetic inputs: shapes, dtypes, ranges, the same values every run", "[model][input]") {
  const InputSpec spec = parse_input_spec("64;64;3,8,8", "int64;bool;bfloat16", "0,1000;0,2;");
  const auto a = synthetic_inputs(spec, 4, 7);
  REQUIRE(a.size() == 3);
  CHECK(a[0].sizes() == at::IntArrayRef({4, 64}));
  CHECK(a[0].scalar_type() == at::kLong);
  CHECK(a[0].min().item<std::int64_t>() >= 0);
  CHECK(a[0].max().item<std::int64_t>() < 1000);
  CHECK(a[1].scalar_type() == at::kBool);
  CHECK(a[2].sizes() == at::IntArrayRef({4, 3, 8, 8}));
  CHECK(a[2].scalar_type() == at::kBFloat16);
  const auto b = synthetic_inputs(spec, 4, 7);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(at::equal(a[i], b[i]));
  CHECK_FALSE(at::equal(synthetic_inputs(spec, 4, 8)[0], a[0]));
  CHECK_THROWS_WITH(synthetic_inputs(parse_input_spec("64", "int64"), 2), Contains("synthetic values need its range"));
}

TEST_CASE("resolve_input: flags, then metadata, then the data set; synthetic only without data", "[model][input]") {
  LoadedModel model;
  DataSource source;
  ResolvedInput r = resolve_input(source, model);
  CHECK(r.origin == "data set");
  CHECK(describe_input_spec(r.spec) == "[1,28,28] float32");
  CHECK_FALSE(r.synthetic);

  source.input_shape = "3,32,32";
  r = resolve_input(source, model);
  CHECK(r.origin == "flags");
  CHECK(r.synthetic);
  source.data_given = true;
  CHECK_FALSE(resolve_input(source, model).synthetic);

  DataSource none;
  model.metadata = ModelMetadata{};
  model.metadata->dataset = fashion_mnist_spec();
  model.metadata->inputs = parse_input_spec("64", "int64", "0,100");
  r = resolve_input(none, model);
  CHECK(r.origin == "model metadata");
  CHECK(r.synthetic);
  none.input_dtype = "int64";
  CHECK_THROWS_WITH(resolve_input(none, model), Contains("give it too"));
}

TEST_CASE("select_output: a tensor, an element of a tuple or list, a value of a dict", "[model][input]") {
  const at::Tensor logits = at::randn({2, 10}), pooled = at::randn({2, 4});
  CHECK(at::equal(select_output(logits, "", "m.pt"), logits));
  const c10::IValue tuple = c10::ivalue::Tuple::create({logits, pooled});
  CHECK(at::equal(select_output(tuple, "1", "m.pt"), pooled));
  CHECK_THROWS_WITH(select_output(tuple, "", "m.pt"),
                    Contains("m.pt: the model returns a tuple of 2 (DataSource::output 0, 1, ...)"));
  CHECK_THROWS_WITH(select_output(tuple, "2", "m.pt"), Contains("DataSource::output 2 names no output"));
  CHECK_THROWS_WITH(select_output(tuple, "x", "m.pt"), Contains("names no output"));
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("logits", logits);
  dict.insert("hidden", pooled);
  const c10::IValue d(dict);
  CHECK(at::equal(select_output(d, "logits", "m.pt"), logits));
  CHECK_THROWS_WITH(select_output(d, "scores", "m.pt"), Contains("a dict with keys logits, hidden"));
  CHECK_THROWS_WITH(select_output(logits, "1", "m.pt"), Contains("returns a single tensor"));
}
