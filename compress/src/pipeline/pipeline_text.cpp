#include "joulecut/pipeline_text.h"

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\n") - a + 1);
}

// Splits on commas outside <...>.
std::vector<std::string> split_top_level(const std::string& text, const std::string& whole) {
  std::vector<std::string> parts;
  int depth = 0;
  std::string current;
  for (char c : text) {
    if (c == '<') ++depth;
    if (c == '>') --depth;
    if (depth < 0) throw UserError("pipeline '" + whole + "': unbalanced '>'");
    if (c == ',' && depth == 0) {
      parts.push_back(trim(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (depth != 0) throw UserError("pipeline '" + whole + "': unbalanced '<'");
  parts.push_back(trim(current));
  return parts;
}

}  // namespace

std::string PassSpec::text() const {
  if (options.empty()) return name;
  std::vector<std::string> pairs;
  for (const auto& [key, value] : options) pairs.push_back(key + "=" + value);
  return name + "<" + join(pairs, ",") + ">";
}

void PassSpec::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : options)
    if (k == key) {
      v = value;
      return;
    }
  options.emplace_back(key, value);
}

std::vector<PassSpec> parse_pipeline_text(const std::string& text) {
  if (trim(text).empty()) throw UserError("empty pipeline: name at least one pass");
  std::vector<PassSpec> passes;
  for (const auto& item : split_top_level(text, text)) {
    if (item.empty()) throw UserError("pipeline '" + text + "': empty pass between commas");
    const auto open = item.find('<');
    PassSpec spec;
    spec.name = trim(item.substr(0, open));
    if (spec.name.empty()) throw UserError("pipeline '" + text + "': '" + item + "' has no pass name");
    if (open != std::string::npos) {
      if (item.back() != '>') throw UserError("pipeline '" + text + "': '" + item + "' must end with '>'");
      const std::string body = item.substr(open + 1, item.size() - open - 2);
      if (!trim(body).empty()) {
        for (const auto& kv : split_top_level(body, text)) {
          const auto eq = kv.find('=');
          if (eq == std::string::npos || trim(kv.substr(0, eq)).empty())
            throw UserError(spec.name + ": option '" + kv + "' must be key=value");
          const std::string key = trim(kv.substr(0, eq));
          for (const auto& [k, v] : spec.options)
            if (k == key) throw UserError(spec.name + ": option '" + key + "' given twice");
          spec.options.emplace_back(key, trim(kv.substr(eq + 1)));
        }
      }
    }
    passes.push_back(spec);
  }
  return passes;
}

std::string pipeline_text(const std::vector<PassSpec>& passes) {
  std::vector<std::string> texts;
  for (const auto& p : passes) texts.push_back(p.text());
  return join(texts, ",");
}

}  // namespace joulecut
