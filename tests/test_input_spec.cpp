// The input spec: the flags' text, its JSON in model metadata, and what is refused.
#include <catch2/catch.hpp>

#include "joulecut/error.h"
#include "joulecut/input_spec.h"

using namespace joulecut;
using Catch::Matchers::Contains;

TEST_CASE("input spec: shapes, dtypes and ranges from the flags' text", "[input]") {
  const InputSpec image = parse_input_spec("3,224,224");
  REQUIRE(image.arguments.size() == 1);
  CHECK(image.arguments[0].shape == std::vector<std::int64_t>{3, 224, 224});
  CHECK(image.arguments[0].dtype == "float32");
  CHECK_FALSE(image.arguments[0].low);
  CHECK(describe_input_spec(image) == "[3,224,224] float32");

  const InputSpec pair = parse_input_spec("64;64", "int64", "0,30522;0,2");
  REQUIRE(pair.arguments.size() == 2);
  CHECK(pair.arguments[1].dtype == "int64");  // one dtype for all
  CHECK(*pair.arguments[0].high == 30522);
  CHECK(*pair.arguments[1].high == 2);
  CHECK(describe_input_spec(pair) == "[64] int64 in [0,30522), [64] int64 in [0,2)");

  const InputSpec mixed = parse_input_spec("3,32,32; 16", "float16;bool");
  CHECK(mixed.arguments[0].dtype == "float16");
  CHECK(mixed.arguments[1].dtype == "bool");
  CHECK(*mixed.arguments[1].high == 2);  // bool's range is implied
  CHECK_THROWS_WITH(parse_input_spec(""), Contains("give the shape of each input"));
}

TEST_CASE("input spec: JSON round trip, as stored in model metadata", "[input]") {
  InputSpec spec = parse_input_spec("64;64", "int64;int32", "0,1000;0,2");
  spec.arguments[0].name = "input_ids";
  const InputSpec back = input_spec_from_json(input_spec_to_json(spec), "m.pt");
  CHECK(describe_input_spec(back) == describe_input_spec(spec));
  CHECK(back.arguments[0].name == "input_ids");
  CHECK_THROWS_WITH(input_spec_from_json("{\"shape\": 3}", "m.pt"), Contains("m.pt: bad input spec in metadata"));
  CHECK_THROWS_WITH(input_spec_from_json("[{\"shape\": [3], \"dtype\": \"int7\"}]", "m.pt"), Contains("unknown dtype int7"));
}

TEST_CASE("input spec: malformed options are refused, naming the option", "[input]") {
  CHECK_THROWS_AS(parse_input_spec("3,x,4"), UserError);
  CHECK_THROWS_WITH(parse_input_spec("3,x,4"), Contains("DataSource::input_shape '3,x,4': 'x' is not an integer"));
  CHECK_THROWS_WITH(parse_input_spec("3,-1"), Contains("dimension -1 must be positive"));
  CHECK_THROWS_WITH(parse_input_spec("64", "int7"), Contains("DataSource::input_dtype 'int7': unsupported"));
  CHECK_THROWS_WITH(parse_input_spec("64;64", "int64;int64;int64"), Contains("3 values for 2 input argument(s)"));
  CHECK_THROWS_WITH(parse_input_spec("3,32,32", "", "0,10"), Contains("a range applies to integer inputs"));
  CHECK_THROWS_WITH(parse_input_spec("64", "int64", "5,5"), Contains("HIGH must be greater than LOW"));
  CHECK_THROWS_WITH(parse_input_spec("64", "int64", "5"), Contains("expected LOW,HIGH"));
}
