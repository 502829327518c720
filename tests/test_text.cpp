// joulecut/text.h: what error messages quote from files prints on one line.
#include <catch2/catch.hpp>

#include "joulecut/text.h"

using joulecut::printable;

TEST_CASE("printable escapes control bytes and invalid UTF-8, keeps text and valid UTF-8", "[text]") {
  CHECK(printable("<f4") == "<f4");
  CHECK(printable(std::string("\x93NUMPY\n\x01", 8)) == "\\x93NUMPY\\x0A\\x01");
  CHECK(printable(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(printable("caf\xC3\xA9 \xE2\x89\xA5 0.99") == "caf\xC3\xA9 \xE2\x89\xA5 0.99");  // é and ≥ stay
  CHECK(printable("\xC3") == "\\xC3");                                              // a cut sequence
  CHECK(printable("\xE2\x89") == "\\xE2\\x89");
  CHECK(printable("") == "");
}
