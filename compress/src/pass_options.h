#pragma once
// Internal: reading and printing pass options ("k=v,k=v"), shared by every pass family.
#include <string>
#include <vector>

#include "joulecut/pass.h"

namespace joulecut {

// Shortest text that reads back as the same double.
std::string number_text(double v);

// Reads one pass's options; unknown keys are an error naming the pass and the known keys.
class OptionReader {
 public:
  OptionReader(std::string pass, const PassOptionMap& options);
  double number(const std::string& key, double fallback);
  int integer(const std::string& key, int fallback);
  std::string text(const std::string& key, const std::string& fallback);
  bool flag(const std::string& key, bool fallback);
  // Throws UserError for any option that no call above asked for.
  void finish() const;

 private:
  std::string pass_;
  const PassOptionMap& options_;
  std::vector<std::string> used_;
};

// Appends "key=value" to `out`.
void append_option(std::vector<std::string>& out, const std::string& key, const std::string& value);
// Joins "k=v" items with commas.
std::string join_options(const std::vector<std::string>& items);

}  // namespace joulecut
