#pragma once
// Atomic output: a file is written to a temporary name in the same directory, flushed to
// disk, then renamed over the target, so a reader (or a crash) never sees half a file.
#include <cstdint>
#include <string>
#include <string_view>

namespace joulecut {

// Writes `content` to `path` atomically. Throws UserError if the directory is not writable.
// Precondition: none; the target is replaced only once the new content is complete.
void write_file_atomic(const std::string& path, std::string_view content);

// Throws UserError if `output` names the same file as `input` (after resolving links), so
// that an input is never overwritten. Either file may be missing.
void refuse_to_overwrite_input(const std::string& input, const std::string& output);

// An exclusive lock on a directory that one process writes (a sweep's or a search's ledger):
// flock(2) on DIR/.joulecut.lock, held until destruction, released by the kernel if the process
// dies. The lock file names its holder (process id, host, start time, command). Throws
// UserError naming the holder when another process holds it. Precondition: `dir` exists.
class DirectoryLock {
 public:
  DirectoryLock(const std::string& dir, const std::string& what);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

std::uintmax_t file_size_bytes(const std::string& path);
// SHA-256 of a file's content, lower-case hex.
std::string sha256_file(const std::string& path);
std::string sha256_hex(std::string_view data);

}  // namespace joulecut
