#pragma once
// Two kinds of failure (see STYLE.md):
//  - UserError: bad input from the user (a file, a flag, a model). The CLI prints its
//    message as one line and exits non-zero. Messages name the file and say how to fix it.
//  - JOULECUT_ASSERT: a broken invariant inside joulecut, i.e. a bug.
#include <stdexcept>
#include <string>
#include <vector>

namespace joulecut {

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
};

// " (did you mean 'x'?)" when one of `known` is within a few edits of `word`, else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

[[noreturn]] void assertion_failed(const char* condition, const char* file, int line, const std::string& message);

}  // namespace joulecut

#define JOULECUT_ASSERT(condition, message)                                         \
  do {                                                                              \
    if (!(condition)) ::joulecut::assertion_failed(#condition, __FILE__, __LINE__, message); \
  } while (0)
