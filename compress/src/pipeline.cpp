#include <cstdio>
#include <sstream>

#include "joulecut/distill.h"
#include "joulecut/error.h"
#include "joulecut/pass.h"
#include "joulecut/prune.h"
#include "joulecut/quantize.h"

namespace joulecut {

std::string Pass::text() const {
  const std::string options = options_text();
  return options.empty() ? name() : name() + "<" + options + ">";
}

namespace {

struct Registered {
  const char* name;
  std::unique_ptr<Pass> (*make)(const PassOptionMap&);
  const char* description;
};

const std::vector<Registered>& registry() {
  static const std::vector<Registered> passes = {
#define JOULECUT_PASS(NAME, CLASS, OPTIONS, DESCRIPTION) \
  {NAME, [](const PassOptionMap& o) -> std::unique_ptr<Pass> { return std::make_unique<CLASS>(CLASS::parse(o)); }, DESCRIPTION},
#include "passes.def"
#undef JOULECUT_PASS
  };
  return passes;
}

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

std::vector<std::unique_ptr<Pass>> parse_pipeline(const std::string& text) {
  std::vector<std::unique_ptr<Pass>> passes;
  if (trim(text).empty()) throw UserError("empty pipeline: name at least one pass (" + describe_passes() + ")");
  for (const auto& item : split_top_level(text, text)) {
    if (item.empty()) throw UserError("pipeline '" + text + "': empty pass between commas");
    const auto open = item.find('<');
    const std::string name = trim(item.substr(0, open));
    PassOptionMap options;
    if (open != std::string::npos) {
      if (item.back() != '>') throw UserError("pipeline '" + text + "': '" + item + "' must end with '>'");
      const std::string body = item.substr(open + 1, item.size() - open - 2);
      if (!trim(body).empty()) {
        for (const auto& kv : split_top_level(body, text)) {
          const auto eq = kv.find('=');
          if (eq == std::string::npos || trim(kv.substr(0, eq)).empty())
            throw UserError(name + ": option '" + kv + "' must be key=value");
          const std::string key = trim(kv.substr(0, eq));
          if (options.count(key)) throw UserError(name + ": option '" + key + "' given twice");
          options[key] = trim(kv.substr(eq + 1));
        }
      }
    }
    const Registered* found = nullptr;
    for (const auto& r : registry())
      if (name == r.name) found = &r;
    if (!found) {
      std::string known;
      for (const auto& r : registry()) known += (known.empty() ? "" : ", ") + std::string(r.name);
      throw UserError("unknown pass '" + name + "'; known passes: " + known);
    }
    passes.push_back(found->make(options));
  }
  return passes;
}

std::string print_pipeline(const std::vector<std::unique_ptr<Pass>>& passes) {
  std::string out;
  for (const auto& p : passes) out += (out.empty() ? "" : ",") + p->text();
  return out;
}

std::string describe_passes() {
  std::string out;
  for (const auto& r : registry()) out += std::string(out.empty() ? "" : "\n") + r.name + ": " + r.description;
  return out;
}

}  // namespace joulecut
