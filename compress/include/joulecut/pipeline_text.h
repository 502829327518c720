#pragma once
// The syntax of a pipeline, "a<k=v,k=v>,b", without the passes behind it: recipes and sweeps
// edit pass options as text before parse_pipeline (pass.h) builds and checks the passes.
// Torch-free.
#include <string>
#include <utility>
#include <vector>

namespace joulecut {

struct PassSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> options;  // in the order written
  std::string text() const;                                    // name<k=v,...> (name alone without options)
  // Sets `key` to `value`, replacing an earlier value or appending.
  void set(const std::string& key, const std::string& value);
};

// Syntax only: throws UserError on unbalanced brackets, empty passes, options without '=',
// an option given twice. Names and values are not checked here.
std::vector<PassSpec> parse_pipeline_text(const std::string& text);
std::string pipeline_text(const std::vector<PassSpec>& passes);

}  // namespace joulecut
