// joulecut/text.h: what error messages quote from files prints on one line.
#include <catch2/catch.hpp>

#include "joulecut/error.h"
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

TEST_CASE("option references: the library names its own options; a front end renders them its way", "[text][error]") {
  using joulecut::option_ref;
  using joulecut::UserError;
  const UserError error(option_ref("DataSource::train_data") + " 'x.npz': give the training split; see " +
                        option_ref("pass:prune-heads"));
  // The library's own text: API names, no front end's flags, no marker bytes.
  CHECK(std::string(error.what()) ==
        "DataSource::train_data 'x.npz': give the training split; see the prune-heads pass");
  CHECK(printable(error.what()) == error.what());
  // A front end's text: each reference through its own mapping.
  const auto flags = [](const std::string& name) {
    return name == "pass:prune-heads" ? "--method heads" : "--" + name;
  };
  CHECK(error.message_with(flags) == "--DataSource::train_data 'x.npz': give the training split; see --method heads");
  // A wrapping error keeps the references for the front end.
  const UserError wrapped("recipe.json: " + error.unrendered());
  CHECK(wrapped.message_with(flags).rfind("recipe.json: --DataSource::train_data", 0) == 0);
  CHECK(joulecut::unrendered_message(error) == error.unrendered());
  CHECK(joulecut::unrendered_message(std::runtime_error("plain")) == "plain");
  // Text without references is unchanged either way.
  CHECK(UserError("plain text").message_with(flags) == "plain text");
}
