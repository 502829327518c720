#include "joulecut/error.h"

#include <cstdio>
#include <cstdlib>

namespace joulecut {

void assertion_failed(const char* condition, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "joulecut internal error: %s (%s) at %s:%d; please report this bug\n", message.c_str(),
               condition, file, line);
  std::abort();
}

}  // namespace joulecut
