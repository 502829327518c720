#include "joulecut/atomic_file.h"

#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "joulecut/error.h"

namespace joulecut {
namespace fs = std::filesystem;

void write_file_atomic(const std::string& path, std::string_view content) {
  const fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir))
    throw UserError(path + ": cannot write: directory " + dir.string() + " does not exist");
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = mkstemp(name.data());
  if (fd < 0) throw UserError(path + ": cannot write to " + dir.string() + " (" + std::strerror(errno) + ")");
  const std::string tmp(name.data());
  auto fail = [&](const char* step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw UserError(path + ": " + step + " failed (" + std::strerror(err) + ")");
  };
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    data += n;
    left -= std::size_t(n);
  }
  // mkstemp creates 0600; give the file the permissions an ordinary create would.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw UserError(path + ": close failed (" + std::strerror(errno) + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw UserError(path + ": rename failed (" + std::strerror(err) + ")");
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void refuse_to_overwrite_input(const std::string& input, const std::string& output) {
  struct stat a {}, b {};
  if (::stat(input.c_str(), &a) != 0 || ::stat(output.c_str(), &b) != 0) return;
  if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    throw UserError(output + ": refusing to overwrite the input model; choose another output path");
}

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& what) {
  const std::string path = (fs::path(dir) / ".joulecut.lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UserError(path + ": cannot open the lock file (" + std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::string holder;
    {
      std::ifstream in(path);
      std::getline(in, holder);
    }
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK)
      throw UserError(dir + ": another process is writing this " + what + " (" +
                      (holder.empty() ? std::string("holder unknown") : holder) +
                      "); wait for it to finish, or choose another directory");
    throw UserError(path + ": cannot lock (" + std::strerror(error) + ")");
  }
  char host[256] = "unknown";
  ::gethostname(host, sizeof host - 1);
  char started[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::string command;
  {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string arg;
    while (std::getline(in, arg, '\0') && command.size() < 200) command += (command.empty() ? "" : " ") + arg;
  }
  const std::string text = "process " + std::to_string(::getpid()) + " on " + host + ", since " + started + ": " +
                           command + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t written = ::pwrite(fd_, text.data(), text.size(), 0);
    (void)written;  // the lock holds without its description
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

std::uintmax_t file_size_bytes(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw UserError(path + ": cannot read size (" + ec.message() + ")");
  return size;
}

namespace {
std::string hex_digest(const unsigned char* digest, unsigned length) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < length; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

// OpenSSL's EVP interface: one context, fed in pieces (a file is hashed as it is read).
class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) {
    if (!context_ || EVP_DigestInit_ex(context_, EVP_sha256(), nullptr) != 1)
      throw std::runtime_error("OpenSSL: cannot start a SHA-256 digest");
  }
  ~Sha256() { EVP_MD_CTX_free(context_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t size) {
    if (EVP_DigestUpdate(context_, data, size) != 1) throw std::runtime_error("OpenSSL: SHA-256 update failed");
  }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned length = 0;
    if (EVP_DigestFinal_ex(context_, digest, &length) != 1) throw std::runtime_error("OpenSSL: SHA-256 failed");
    return hex_digest(digest, length);
  }

 private:
  EVP_MD_CTX* context_;
};
}  // namespace

std::string sha256_hex(std::string_view data) {
  Sha256 sha;
  sha.update(data.data(), data.size());
  return sha.hex();
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path + ": cannot open (" + std::strerror(errno) + ")");
  Sha256 sha;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    sha.update(buffer.data(), std::size_t(in.gcount()));
  }
  if (in.bad()) throw UserError(path + ": read error (" + std::strerror(errno) + ")");
  return sha.hex();
}

}  // namespace joulecut
