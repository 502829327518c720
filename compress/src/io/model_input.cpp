#include "joulecut/model_input.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

at::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "float32") return at::kFloat;
  if (dtype == "float16") return at::kHalf;
  if (dtype == "bfloat16") return at::kBFloat16;
  if (dtype == "int64") return at::kLong;
  if (dtype == "int32") return at::kInt;
  if (dtype == "uint8") return at::kByte;
  if (dtype == "bool") return at::kBool;
  JOULECUT_ASSERT(false, "input dtype '" + dtype + "' passed parse_input_spec");
  return at::kFloat;
}

// The input spec's name for a tensor's dtype (scalar_type's inverse); LibTorch's for the others.
std::string dtype_name(at::ScalarType type) {
  for (const char* name : {"float32", "float16", "bfloat16", "int64", "int32", "uint8", "bool"})
    if (scalar_type(name) == type) return name;
  return c10::toString(type);
}

std::string inputs_text(const std::vector<at::Tensor>& inputs) {
  std::vector<std::string> described;
  for (const auto& t : inputs) described.push_back(shape_text(t.sizes()) + " " + std::string(c10::toString(t.scalar_type())));
  return join(described, ", ");
}

std::string output_kinds(const c10::IValue& output) {
  if (output.isTuple())
    return "a tuple of " + std::to_string(output.toTupleRef().elements().size()) + " (" +
           option_ref("DataSource::output") + " 0, 1, ...)";
  if (output.isList())
    return "a list of " + std::to_string(output.toListRef().size()) + " (" + option_ref("DataSource::output") +
           " 0, 1, ...)";
  if (output.isGenericDict()) {
    std::string keys;
    for (const auto& item : output.toGenericDict())
      if (item.key().isString()) keys += (keys.empty() ? "" : ", ") + item.key().toStringRef();
    return "a dict with keys " + keys + " (" + option_ref("DataSource::output") + " KEY)";
  }
  return output.tagKind();
}

}  // namespace

InputSpec input_spec_of(const DatasetSpec& data) {
  InputSpec spec;
  InputArgument a;
  a.shape = {data.channels, data.height, data.width};
  spec.arguments.push_back(a);
  return spec;
}

InputSpec input_spec_of(const TensorDataset& data) {
  InputSpec spec;
  const std::vector<at::Tensor> first = data.input_tensors(0, 1);
  for (std::size_t i = 0; i < first.size(); ++i) {
    InputArgument a;
    if (i < data.input_names.size()) a.name = data.input_names[i];
    const auto sample = first[i].sizes().slice(1);  // without the batch dimension
    a.shape.assign(sample.begin(), sample.end());
    a.dtype = dtype_name(first[i].scalar_type());
    spec.arguments.push_back(a);
  }
  return spec;
}

ResolvedInput resolve_input(const DataSource& source, const LoadedModel& model) {
  ResolvedInput r;
  const DatasetSpec dataset = model.metadata ? model.metadata->dataset : fashion_mnist_spec();
  if (!source.input_shape.empty()) {
    r.spec = parse_input_spec(source.input_shape, source.input_dtype, source.input_range);
    r.origin = "flags";
  } else {
    if (!source.input_dtype.empty() || !source.input_range.empty())
      throw UserError(option_ref("DataSource::input_dtype") + " and " + option_ref("DataSource::input_range") +
                      " describe the arguments of " + option_ref("DataSource::input_shape") + ": give it too");
    if (model.metadata && model.metadata->inputs) {
      r.spec = *model.metadata->inputs;
      r.origin = "model metadata";
    } else {
      r.spec = input_spec_of(dataset);
      r.origin = "data set";
    }
  }
  const InputSpec images = input_spec_of(dataset);
  const bool fits_images = r.spec.arguments.size() == 1 && r.spec.arguments[0].dtype == "float32" &&
                           r.spec.arguments[0].shape == images.arguments[0].shape;
  r.synthetic = !source.given() && !fits_images;
  return r;
}

void require_real_data(const ResolvedInput& input, const std::string& model_path, bool for_training) {
  if (!input.synthetic) return;
  throw UserError(model_path + ": no data for its input " + describe_input_spec(input.spec) +
                  (for_training ? ": calibration and training need real data (ranges and gradients from generated "
                                  "inputs would be wrong); give " +
                                      option_ref("DataSource::data")
                                : ": accuracy needs real data; give " + option_ref("DataSource::data")));
}

std::vector<at::Tensor> synthetic_inputs(const InputSpec& spec, std::int64_t batch, std::uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<at::Tensor> inputs;
  for (std::size_t i = 0; i < spec.arguments.size(); ++i) {
    const InputArgument& a = spec.arguments[i];
    std::vector<std::int64_t> shape{batch};
    shape.insert(shape.end(), a.shape.begin(), a.shape.end());
    if (is_integer_dtype(a.dtype)) {
      if (!a.low || !a.high)
        throw UserError("input " + std::to_string(i + 1) + (a.name.empty() ? "" : " (" + a.name + ")") + " is " +
                        a.dtype + ": synthetic values need its range, e.g. " + option_ref("DataSource::input_range") +
                        " 0,30522 for token ids");
      inputs.push_back(at::randint(*a.low, *a.high, shape, generator, at::TensorOptions().dtype(at::kLong))
                           .to(scalar_type(a.dtype)));
    } else {
      inputs.push_back(at::randn(shape, generator, at::TensorOptions().dtype(at::kFloat)).to(scalar_type(a.dtype)));
    }
  }
  return inputs;
}

void check_model_accepts_inputs(torch::jit::Module& module, const std::vector<at::Tensor>& inputs,
                                const std::string& model_path) {
  try {
    at::NoGradGuard no_grad;
    module.eval();
    module.forward(std::vector<c10::IValue>(inputs.begin(), inputs.end()));
  } catch (const std::exception& e) {
    throw UserError(model_path + ": model does not accept input " + inputs_text(inputs) + " (" +
                    torch_error_summary(e) + "); describe its input with " + option_ref("DataSource::input_shape") +
                    ", " + option_ref("DataSource::input_dtype") + " and " + option_ref("DataSource::input_range"));
  }
}

void arrange_inputs(TensorDataset& data, const torch::jit::Module& module, const std::string& model_path) {
  const std::size_t given = 1 + data.more_inputs.size();
  std::vector<std::string> arguments;
  const auto& schema = module.get_method("forward").function().getSchema();
  for (std::size_t i = 1; i < schema.arguments().size(); ++i) {  // 0 is self
    std::string name = schema.arguments()[i].name();
    const auto dot = name.find('.');  // traced files name them "input_ids.1"
    if (dot != std::string::npos) name.resize(dot);
    arguments.push_back(name);
  }
  const bool named = !data.input_names.empty() && !(given == 1 && data.input_names.front().empty());
  if (!named || (given == 1 && arguments.size() == 1)) return;  // one array for one argument: its name is free
  const std::string list = join(arguments, ", ");
  std::vector<at::Tensor> all{data.images};
  all.insert(all.end(), data.more_inputs.begin(), data.more_inputs.end());
  std::vector<at::Tensor> ordered;
  for (const auto& a : arguments) {
    const auto it = std::find(data.input_names.begin(), data.input_names.end(), a);
    if (it == data.input_names.end()) {
      if (!ordered.empty() && schema.arguments()[ordered.size() + 1].default_value()) break;  // optional argument
      throw UserError(data.spec.name + ": no array '" + a + "' for " + model_path + "'s forward(" + list + ")");
    }
    ordered.push_back(all[std::size_t(it - data.input_names.begin())]);
  }
  for (const auto& name : data.input_names)
    if (std::find(arguments.begin(), arguments.end(), name) == arguments.end())
      throw UserError(data.spec.name + ": array '" + name + "' is no argument of " + model_path + "'s forward(" + list + ")");
  data.images = ordered.front();
  data.more_inputs.assign(ordered.begin() + 1, ordered.end());
  data.input_names.assign(arguments.begin(), arguments.begin() + std::ptrdiff_t(ordered.size()));
}

at::Tensor select_output(const c10::IValue& output, const std::string& selector, const std::string& model_path) {
  if (output.isTensor()) {
    if (!selector.empty() && selector != "0")
      throw UserError(model_path + ": " + option_ref("DataSource::output") + " " + selector +
                      ": the model returns a single tensor");
    return output.toTensor();
  }
  c10::IValue picked;
  if ((output.isTuple() || output.isList()) && !selector.empty()) {
    const auto elements = output.isTuple() ? output.toTupleRef().elements().vec() : output.toListRef().vec();
    std::size_t used = 0;
    long index = -1;
    try {
      index = std::stol(selector, &used);
    } catch (const std::exception&) {
    }
    if (used != selector.size() || index < 0 || std::size_t(index) >= elements.size())
      throw UserError(model_path + ": " + option_ref("DataSource::output") + " " + selector +
                      " names no output: the model returns " + output_kinds(output));
    picked = elements[std::size_t(index)];
  } else if (output.isGenericDict() && !selector.empty()) {
    for (const auto& item : output.toGenericDict())
      if (item.key().isString() && item.key().toStringRef() == selector) picked = item.value();
    if (picked.isNone())
      throw UserError(model_path + ": " + option_ref("DataSource::output") + " " + selector +
                      " names no output: the model returns " + output_kinds(output));
  } else {
    throw UserError(model_path + ": the model returns " + output_kinds(output) + "; say which holds the class scores");
  }
  if (!picked.isTensor())
    throw UserError(model_path + ": " + option_ref("DataSource::output") + " " + selector + " is " + picked.tagKind() +
                    ", not a tensor of scores");
  return picked.toTensor();
}

}  // namespace joulecut
