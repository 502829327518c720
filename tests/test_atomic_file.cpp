#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;

TEST_CASE("atomic write replaces the target and leaves no temporary", "[io]") {
  TempDir dir;
  const auto path = dir.file("out.bin");
  std::ofstream(path) << "old content";
  joulecut::write_file_atomic(path, "new content");
  CHECK(slurp(path) == "new content");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("atomic write into a missing directory names it", "[io]") {
  TempDir dir;
  CHECK_THROWS_WITH(joulecut::write_file_atomic(dir.file("no/such/out.pt"), "x"), Contains("does not exist"));
}

TEST_CASE("an input is never overwritten", "[io]") {
  TempDir dir;
  const auto input = dir.file("model.pt");
  std::ofstream(input) << "x";
  std::filesystem::create_symlink(input, dir.file("link.pt"));
  CHECK_THROWS_WITH(joulecut::refuse_to_overwrite_input(input, input), Contains("refusing to overwrite"));
  CHECK_THROWS_AS(joulecut::refuse_to_overwrite_input(input, dir.file("link.pt")), joulecut::UserError);
  CHECK_NOTHROW(joulecut::refuse_to_overwrite_input(input, dir.file("other.pt")));
}

TEST_CASE("sha256 matches the FIPS test vectors", "[io]") {
  CHECK(joulecut::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(joulecut::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(joulecut::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(joulecut::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("a directory lock admits one writer and names it to the next", "[io]") {
  TempDir dir;
  {
    const joulecut::DirectoryLock first(dir.path.string(), "sweep's ledger");
    // A second open file description conflicts under flock(2), in this process as in another.
    try {
      joulecut::DirectoryLock second(dir.path.string(), "sweep's ledger");
      FAIL("the second lock was granted");
    } catch (const joulecut::UserError& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Contains("another process is writing this sweep's ledger"));
      CHECK_THAT(message, Contains("process " + std::to_string(::getpid()) + " on "));
      CHECK_THAT(message, Contains("choose another directory"));
    }
  }
  // Released with its holder: the next writer gets it.
  CHECK_NOTHROW(joulecut::DirectoryLock(dir.path.string(), "sweep's ledger"));
  CHECK_THROWS_WITH(joulecut::DirectoryLock(dir.file("missing"), "sweep's ledger"), Contains("cannot open the lock file"));
}
