#include "joulecut/input_spec.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

std::int64_t parse_integer(const std::string& text, const std::string& flag, const std::string& whole) {
  try {
    std::size_t used = 0;
    const long long v = std::stoll(trim(text), &used);
    if (used != trim(text).size()) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    throw UserError(flag + " '" + whole + "': '" + text + "' is not an integer");
  }
}

// One value per argument, or one value for all of them.
std::vector<std::string> per_argument(const std::string& text, std::size_t arguments, const std::string& flag) {
  auto parts = split(text, ';');
  if (parts.size() == 1) parts.assign(arguments, parts.front());
  if (parts.size() != arguments)
    throw UserError(flag + " '" + text + "': " + std::to_string(parts.size()) + " values for " +
                    std::to_string(arguments) + " input argument(s) (separate arguments with ';')");
  return parts;
}

std::string dims_text(const std::vector<std::int64_t>& shape) {
  std::vector<std::string> dims;
  for (const auto d : shape) dims.push_back(std::to_string(d));
  return "[" + join(dims, ",") + "]";
}

}  // namespace

const std::vector<std::string>& input_dtypes() {
  static const std::vector<std::string> dtypes = {"float32", "float16", "bfloat16", "int64", "int32", "uint8", "bool"};
  return dtypes;
}

bool is_integer_dtype(const std::string& dtype) {
  return dtype == "int64" || dtype == "int32" || dtype == "uint8" || dtype == "bool";
}

InputSpec parse_input_spec(const std::string& shapes, const std::string& dtypes, const std::string& ranges) {
  // How messages name the three options (joulecut/error.h).
  const std::string shape_option = option_ref("DataSource::input_shape");
  const std::string dtype_option = option_ref("DataSource::input_dtype");
  const std::string range_option = option_ref("DataSource::input_range");
  InputSpec spec;
  for (const auto& part : split(shapes, ';')) {
    InputArgument argument;
    const std::string text = trim(part);
    if (!text.empty())
      for (const auto& dim : split(text, ',')) {
        const auto d = parse_integer(dim, shape_option, shapes);
        if (d <= 0)
          throw UserError(shape_option + " '" + shapes + "': dimension " + std::to_string(d) + " must be positive");
        argument.shape.push_back(d);
      }
    spec.arguments.push_back(argument);
  }
  if (spec.arguments.empty())
    throw UserError(shape_option + ": give the shape of each input without the batch, e.g. 3,224,224");
  if (!dtypes.empty()) {
    const auto parts = per_argument(dtypes, spec.arguments.size(), dtype_option);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string dtype = trim(parts[i]);
      const auto& known = input_dtypes();
      if (std::find(known.begin(), known.end(), dtype) == known.end())
        throw UserError(dtype_option + " '" + dtype + "': unsupported; choose one of " + join(known, ", "));
      spec.arguments[i].dtype = dtype;
    }
  }
  for (auto& a : spec.arguments)
    if (a.dtype == "bool") {
      a.low = 0;
      a.high = 2;
    }
  if (!ranges.empty()) {
    const auto parts = per_argument(ranges, spec.arguments.size(), range_option);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      InputArgument& a = spec.arguments[i];
      if (trim(parts[i]).empty()) continue;  // "0,30522;" : no range for this argument
      const auto bounds = split(trim(parts[i]), ',');
      if (!is_integer_dtype(a.dtype))
        throw UserError(range_option + " '" + ranges + "': input " + std::to_string(i + 1) + " is " + a.dtype +
                        "; a range applies to integer inputs (token ids, indices): set " + dtype_option + " int64");
      if (bounds.size() != 2)
        throw UserError(range_option + " '" + parts[i] + "': expected LOW,HIGH (values in [LOW, HIGH), e.g. 0,30522)");
      a.low = parse_integer(bounds[0], range_option, ranges);
      a.high = parse_integer(bounds[1], range_option, ranges);
      if (*a.high <= *a.low)
        throw UserError(range_option + " '" + parts[i] +
                        "': HIGH must be greater than LOW (values lie in [LOW, HIGH))");
    }
  }
  return spec;
}

std::string describe_input_spec(const InputSpec& spec) {
  std::vector<std::string> described;
  for (const auto& a : spec.arguments) {
    std::string text = a.name.empty() ? "" : a.name + " ";
    text += dims_text(a.shape) + " " + a.dtype;
    if (a.low && a.high) text += " in [" + std::to_string(*a.low) + "," + std::to_string(*a.high) + ")";
    described.push_back(text);
  }
  return join(described, ", ");
}

std::string input_spec_to_json(const InputSpec& spec) {
  nlohmann::json arguments = nlohmann::json::array();
  for (const auto& a : spec.arguments) {
    nlohmann::json j = {{"name", a.name}, {"shape", a.shape}, {"dtype", a.dtype}};
    if (a.low && a.high) j["range"] = {*a.low, *a.high};
    arguments.push_back(j);
  }
  return arguments.dump();
}

InputSpec input_spec_from_json(const std::string& json, const std::string& origin) {
  try {
    const auto j = nlohmann::json::parse(json);
    if (!j.is_array()) throw std::invalid_argument("not an array of arguments");
    InputSpec spec;
    for (const auto& item : j) {
      InputArgument a;
      a.name = item.value("name", "");
      a.shape = item.at("shape").get<std::vector<std::int64_t>>();
      a.dtype = item.value("dtype", "float32");
      const auto& known = input_dtypes();
      if (std::find(known.begin(), known.end(), a.dtype) == known.end())
        throw std::invalid_argument("unknown dtype " + a.dtype);
      if (item.contains("range")) {
        a.low = item["range"].at(0).get<std::int64_t>();
        a.high = item["range"].at(1).get<std::int64_t>();
      }
      spec.arguments.push_back(a);
    }
    return spec;
  } catch (const std::exception& e) {
    throw UserError(origin + ": bad input spec in metadata (" + unrendered_message(e) + ")");
  }
}

}  // namespace joulecut
