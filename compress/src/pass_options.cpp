#include "pass_options.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "joulecut/error.h"

namespace joulecut {

std::string number_text(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g", v);
  return buffer;
}

OptionReader::OptionReader(std::string pass, const PassOptionMap& options)
    : pass_(std::move(pass)), options_(options) {}

double OptionReader::number(const std::string& key, double fallback) {
  used_.push_back(key);
  const auto it = options_.find(key);
  if (it == options_.end()) return fallback;
  try {
    std::size_t used = 0;
    const double v = std::stod(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument(it->second);
    return v;
  } catch (const std::exception&) {
    throw UserError(pass_ + ": " + key + "='" + it->second + "' is not a number");
  }
}

int OptionReader::integer(const std::string& key, int fallback) {
  const double v = number(key, fallback);
  if (v != double(int(v))) throw UserError(pass_ + ": " + key + " must be an integer");
  return int(v);
}

std::string OptionReader::text(const std::string& key, const std::string& fallback) {
  used_.push_back(key);
  const auto it = options_.find(key);
  return it == options_.end() ? fallback : it->second;
}

bool OptionReader::flag(const std::string& key, bool fallback) {
  const std::string v = text(key, fallback ? "true" : "false");
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw UserError(pass_ + ": " + key + "='" + v + "' must be true or false");
}

void OptionReader::finish() const {
  for (const auto& [key, value] : options_) {
    if (std::find(used_.begin(), used_.end(), key) != used_.end()) continue;
    std::string known;
    for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
    throw UserError(pass_ + ": unknown option '" + key + "'" + did_you_mean(key, used_) + " (known: " + known + ")");
  }
}

void append_option(std::vector<std::string>& out, const std::string& key, const std::string& value) {
  out.push_back(key + "=" + value);
}

std::string join_options(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

}  // namespace joulecut
