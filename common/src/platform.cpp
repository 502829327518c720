#include "joulecut/platform.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace joulecut {
namespace {

int collect_blas(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (!info->dlpi_name || !*info->dlpi_name) return 0;
  const std::string name(info->dlpi_name);
  const auto slash = name.find_last_of('/');
  const std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
  if (base.rfind("libblas.so", 0) == 0 || base.rfind("libopenblas", 0) == 0 || base.rfind("libblis", 0) == 0 ||
      base.rfind("libmkl_rt", 0) == 0) {
    char resolved[PATH_MAX];
    const std::string path = realpath(name.c_str(), resolved) ? std::string(resolved) : name;
    // Prefer the libblas.so.3 entry (what LibTorch calls through) over its dependencies.
    if (out->empty() || base.rfind("libblas.so", 0) == 0) *out = path;
  }
  return 0;
}

}  // namespace

BlasInfo blas_info() {
  BlasInfo info;
  dl_iterate_phdr(collect_blas, &info.library);
  using GetConfig = char* (*)();
  using GetThreads = int (*)();
  auto get_config = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto get_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const bool reference_path = info.library.find("/blas/libblas") != std::string::npos;
  if (get_config && !reference_path) {
    info.name = "OpenBLAS";
    const char* config = get_config();
    info.config = config ? config : "";
    if (auto get_corename = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
      info.config += std::string(" core=") + get_corename();
    if (get_threads) info.threads = get_threads();
  } else if (reference_path) {
    info.name = "reference BLAS (netlib)";
  } else if (info.library.find("blis") != std::string::npos) {
    info.name = "BLIS";
  } else if (info.library.find("mkl") != std::string::npos) {
    info.name = "MKL";
  } else if (info.library.empty()) {
    info.name = "none loaded";
  } else {
    info.name = "unknown";
  }
  return info;
}

BlasInfo blas_from_build_config(const std::string& config) {
  BlasInfo info;
  info.name = "none loaded";
  const std::string key = "BLAS_INFO=";
  const auto at = config.find(key);
  if (at == std::string::npos) return info;
  const auto end = config.find_first_of(", \n", at + key.size());
  const std::string blas = config.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
  if (blas.empty()) return info;
  info.name = (blas == "mkl" ? "MKL" : blas == "open" || blas == "openblas" ? "OpenBLAS" : blas) + " (inside LibTorch)";
  info.library = "linked into LibTorch";
  info.config = "from LibTorch's build settings: " + key + blas;
  return info;
}

bool set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set) return false;
  set(threads);
  return true;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

int logical_cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

std::string kernel_release() {
  struct utsname u {};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

SystemCpuTimes system_cpu_times() {
  SystemCpuTimes t;
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq) || cpu != "cpu") return t;
  in >> steal;  // absent on old kernels: 0
  const double tick = double(sysconf(_SC_CLK_TCK));
  if (tick <= 0) return t;
  t.busy = (user + nice + system + irq + softirq) / tick;
  t.steal = steal / tick;
  t.valid = true;
  return t;
}

}  // namespace joulecut
