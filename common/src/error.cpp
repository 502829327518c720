#include "joulecut/error.h"

#include <cstdio>
#include <cstdlib>
#include <algorithm>

namespace joulecut {

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// An option reference in a message: kOptionOpen, the library's name, kOptionClose. Control
// characters that no message text holds (printable() escapes any that come from files).
constexpr char kOptionOpen = '\x1e';
constexpr char kOptionClose = '\x1f';

std::string render_options(const std::string& text, const std::function<std::string(const std::string&)>& name_of) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t open = text.find(kOptionOpen, at);
    const std::size_t close = open == std::string::npos ? open : text.find(kOptionClose, open);
    if (close == std::string::npos) return out + text.substr(at);
    out += text.substr(at, open - at) + name_of(text.substr(open + 1, close - open - 1));
    at = close + 1;
  }
  return out;
}

// How the library itself names an option: as written, a pass as "the NAME pass".
std::string library_name(const std::string& name) {
  const std::string pass = "pass:";
  return name.rfind(pass, 0) == 0 ? "the " + name.substr(pass.size()) + " pass" : name;
}

}  // namespace

std::string option_ref(const std::string& library_name) { return kOptionOpen + library_name + kOptionClose; }

UserError::UserError(const std::string& message)
    : std::runtime_error(render_options(message, library_name)), unrendered_(message) {}

std::string UserError::message_with(const std::function<std::string(const std::string&)>& name_of) const {
  return render_options(unrendered_, name_of);
}

std::string unrendered_message(const std::exception& e) {
  const auto* user_error = dynamic_cast<const UserError*>(&e);
  return user_error ? user_error->unrendered() : e.what();
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  // A third of the word's length, at least 1 and at most 3 edits: typos, not other names.
  const std::size_t limit = std::clamp<std::size_t>(word.size() / 3, 1, 3);
  std::string best;
  std::size_t best_distance = limit + 1;
  for (const auto& k : known) {
    const std::size_t d = edit_distance(word, k);
    // A prefix ("prune" for "prune-magnitude") is a likely meaning too.
    const bool prefix = word.size() >= 3 && k.compare(0, word.size(), word) == 0;
    if (d < best_distance || (prefix && best.empty())) {
      best = k;
      best_distance = prefix ? std::min(d, limit) : d;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

void assertion_failed(const char* condition, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "joulecut internal error: %s (%s) at %s:%d; please report this bug\n", message.c_str(),
               condition, file, line);
  std::abort();
}

}  // namespace joulecut
