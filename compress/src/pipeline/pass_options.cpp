#include "joulecut/pass_options.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {

const char* option_type_name(OptionType type) {
  switch (type) {
    case OptionType::number: return "number";
    case OptionType::integer: return "integer";
    case OptionType::flag: return "true|false";
    case OptionType::path: return "file";
    case OptionType::text: break;
  }
  return "text";
}

std::string number_text(double v) { return format("%.15g", v); }

std::string options_summary(const std::vector<OptionInfo>& options) {
  std::vector<std::string> defaults;
  for (const auto& o : options) defaults.push_back(o.name + "=" + o.default_text);
  return options.empty() ? "no options" : join(defaults, " ");
}

namespace option_detail {

double read_number(const std::string& pass, const std::string& key, const std::string& text) {
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    throw UserError(pass + ": " + key + "='" + text + "' is not a number");
  }
}

std::int64_t read_integer(const std::string& pass, const std::string& key, const std::string& text) {
  const double v = read_number(pass, key, text);
  if (!(std::fabs(v) < 9e15) || v != std::floor(v)) throw UserError(pass + ": " + key + " must be an integer");
  return std::int64_t(v);
}

bool read_flag(const std::string& pass, const std::string& key, const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw UserError(pass + ": " + key + "='" + text + "' must be true or false");
}

void unknown_option(const std::string& pass, const std::string& key, const std::vector<std::string>& known) {
  throw UserError(pass + ": unknown option '" + key + "'" + did_you_mean(key, known) +
                  (known.empty() ? " (it has no options)" : " (known: " + join(known, ", ") + ")"));
}

}  // namespace option_detail
}  // namespace joulecut
