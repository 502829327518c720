#pragma once
// Two kinds of failure (see STYLE.md):
//  - UserError: bad input from the user (a file, a flag, a model). The CLI prints its
//    message as one line and exits non-zero. Messages name the file and say how to fix it.
//  - JOULECUT_ASSERT: a broken invariant inside joulecut, i.e. a bug.
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace joulecut {

// An option named in a message, by the library's own name for it: an API field
// ("DataSource::train_data") or a pass option ("max-accuracy-drop"). The library never names a
// front end's flags; UserError::what() shows the library's name, and a front end renders each
// reference its own way (the compress command: --train-data) through UserError::message_with.
std::string option_ref(const std::string& library_name);

class UserError : public std::runtime_error {
 public:
  // `message` may hold option_ref()s.
  explicit UserError(const std::string& message);
  // The message with each option reference rendered by `name_of` (given the library's name).
  std::string message_with(const std::function<std::string(const std::string&)>& name_of) const;
  // The message as written, option references kept: for a UserError that wraps this one.
  const std::string& unrendered() const { return unrendered_; }

 private:
  std::string unrendered_;
};

// e's message for a UserError that wraps it: a UserError's unrendered(), else e.what().
std::string unrendered_message(const std::exception& e);

// " (did you mean 'x'?)" when one of `known` is within a few edits of `word`, else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& known);

[[noreturn]] void assertion_failed(const char* condition, const char* file, int line, const std::string& message);

}  // namespace joulecut

#define JOULECUT_ASSERT(condition, message)                                         \
  do {                                                                              \
    if (!(condition)) ::joulecut::assertion_failed(#condition, __FILE__, __LINE__, message); \
  } while (0)
