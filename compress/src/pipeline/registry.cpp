#include <cstdio>
#include <sstream>

#include "joulecut/distill.h"
#include "joulecut/error.h"
#include "joulecut/pass.h"
#include "joulecut/pipeline_text.h"
#include "joulecut/prune.h"
#include "joulecut/quantize.h"
#include "joulecut/text.h"

namespace joulecut {

std::string Pass::text() const {
  const std::string options = options_text();
  return options.empty() ? name() : name() + "<" + options + ">";
}

namespace {

struct Registered {
  const char* name;
  std::unique_ptr<Pass> (*make)(const PassOptionMap&);
  std::vector<OptionInfo> (*options)();
  const char* summary;
};

const std::vector<Registered>& registry() {
  static const std::vector<Registered> passes = {
#define JOULECUT_PASS(NAME, CLASS, OPTIONS, SUMMARY)                                                   \
  {NAME, [](const PassOptionMap& o) -> std::unique_ptr<Pass> { return std::make_unique<CLASS>(CLASS::parse(o)); }, \
   [] { return CLASS::options_table().describe(); }, SUMMARY},
#include "passes.def"
#undef JOULECUT_PASS
  };
  return passes;
}

// Other names people use for a pass (the issue tracker's and other toolkits' words).
const std::vector<std::pair<std::string, std::string>>& aliases() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"fold-bn", "fold-batchnorm"}, {"quantize-int8", "quantize-static"}, {"prune", "prune-magnitude"}};
  return table;
}

// The registered pass called `name` (or one of its aliases); throws UserError naming the known
// passes when there is none.
const Registered& find_pass(std::string name) {
  for (const auto& [alias, canonical] : aliases())
    if (name == alias) name = canonical;
  for (const auto& r : registry())
    if (name == r.name) return r;
  std::vector<std::string> names;
  for (const auto& r : registry()) names.push_back(r.name);
  throw UserError("unknown pass '" + name + "'" + did_you_mean(name, names) + "; known passes: " + join(names, ", "));
}

}  // namespace

std::vector<std::unique_ptr<Pass>> parse_pipeline(const std::string& text) {
  if (text.find_first_not_of(" \t\n") == std::string::npos)
    throw UserError("empty pipeline: name at least one pass (" + describe_passes() + ")");
  std::vector<std::unique_ptr<Pass>> passes;
  for (const auto& spec : parse_pipeline_text(text)) {
    PassOptionMap options;
    for (const auto& [k, v] : spec.options) options[k] = v;
    passes.push_back(make_pass(spec.name, options));
  }
  return passes;
}

std::unique_ptr<Pass> make_pass(const std::string& name, const PassOptionMap& options) {
  return find_pass(name).make(options);
}

std::vector<std::string> pass_names() {
  std::vector<std::string> names;
  for (const auto& r : registry()) names.push_back(r.name);
  return names;
}

UserError pass_error(const std::string& pass, const std::string& message) { return UserError(pass + ": " + message); }

std::string print_pipeline(const std::vector<std::unique_ptr<Pass>>& passes) {
  std::vector<std::string> texts;
  for (const auto& p : passes) texts.push_back(p->text());
  return join(texts, ",");
}

std::string describe_passes() {
  std::vector<std::string> lines;
  for (const auto& r : registry())
    lines.push_back(std::string(r.name) + ": " + r.summary + "; " + options_summary(r.options()));
  return join(lines, "\n");
}

std::vector<OptionInfo> pass_options(const std::string& name) { return find_pass(name).options(); }

}  // namespace joulecut
