#pragma once
// What a model's forward() takes: for each argument a shape without the batch dimension, a
// dtype and, for integer inputs, the range of values it accepts (token ids, class indices).
// It comes from, in this order: the flags (--input-shape, --input-dtype, --input-range), the
// model's joulecut metadata, the data set. Recorded in every model joulecut writes and in every
// manifest. Torch-free.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace joulecut {

struct InputArgument {
  std::string name;                  // forward()'s parameter name, when known ("input_ids")
  std::vector<std::int64_t> shape;   // without the batch dimension, e.g. {3, 224, 224}
  std::string dtype = "float32";     // float32 float16 bfloat16 int64 int32 uint8 bool
  // Integer inputs: values drawn for synthetic input lie in [low, high). Float inputs have none.
  std::optional<std::int64_t> low, high;
};

struct InputSpec {
  std::vector<InputArgument> arguments;
  bool empty() const { return arguments.empty(); }
};

// The dtypes an input may have, as written in flags and metadata.
const std::vector<std::string>& input_dtypes();
bool is_integer_dtype(const std::string& dtype);

// The flags' text: `shapes` "3,224,224" or "64;64" (';' separates arguments), `dtypes` "int64"
// (one for all) or "int64;int64", `ranges` "0,30522" (for every integer argument) or
// "0,30522;0,2" (an empty part: no range). Empty dtypes/ranges: float32 / none.
// Throws UserError naming the flag on anything malformed: a non-positive dimension, an unknown
// dtype, a range on a float argument, more dtypes or ranges than arguments.
InputSpec parse_input_spec(const std::string& shapes, const std::string& dtypes = "", const std::string& ranges = "");

// "[3,224,224] float32" or "input_ids [64] int64 in [0,30522), attention_mask [64] int64 in [0,2)".
std::string describe_input_spec(const InputSpec& spec);

std::string input_spec_to_json(const InputSpec& spec);
// Throws UserError (naming `origin`) when the JSON is not an input spec.
InputSpec input_spec_from_json(const std::string& json, const std::string& origin);

}  // namespace joulecut
