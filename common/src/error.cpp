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

}  // namespace

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
