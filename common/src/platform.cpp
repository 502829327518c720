#include "joulecut/platform.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <map>
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

// Set in the environment of a restarted program: the kernel set OpenBLAS chose by itself.
constexpr const char* kRestartedFrom = "JOULECUT_OPENBLAS_CHOSE";

// The widest vectors each of OpenBLAS' x86-64 kernel sets uses (0.3.21's names).
int kernel_vector_level(const std::string& kernels) {
  static const std::map<std::string, int> level = {
      {"Prescott", 0},    {"Core2", 0},       {"Penryn", 0},     {"Dunnington", 0}, {"Nehalem", 0},
      {"Atom", 0},        {"Opteron", 0},     {"Opteron(SSE3)", 0}, {"Barcelona", 0}, {"Nano", 0},
      {"Bobcat", 0},      {"Sandybridge", 1}, {"Bulldozer", 1},  {"Piledriver", 1}, {"Steamroller", 1},
      {"Excavator", 2},   {"Haswell", 2},     {"Zen", 2},        {"SkylakeX", 3},   {"Cooperlake", 3},
      {"SapphireRapids", 3}};
  const auto it = level.find(kernels);
  return it == level.end() ? -1 : it->second;
}

}  // namespace

int cpu_vector_level() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return 3;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
  if (__builtin_cpu_supports("avx")) return 1;
#endif
  return 0;
}

std::string better_openblas_kernels(const std::string& kernels, int cpu_level) {
  const int used = kernel_vector_level(kernels);
  if (used < 0 || used >= cpu_level) return "";
  return cpu_level >= 3 ? "SkylakeX" : cpu_level == 2 ? "Haswell" : "Sandybridge";
}

std::string BlasInfo::better_kernels() const { return better_openblas_kernels(kernels, cpu_vector_level()); }

void restart_with_better_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  const BlasInfo blas = blas_info();
  const std::string better = blas.better_kernels();
  if (better.empty()) return;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  setenv(kRestartedFrom, blas.kernels.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Not restarted: run on as loaded; blas_info() says the kernels are narrower than the CPU's.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kRestartedFrom);
}

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
    if (auto get_corename = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) {
      const char* core = get_corename();
      info.kernels = core ? core : "";
      info.config += " core=" + info.kernels;
      const char* from = std::getenv(kRestartedFrom);
      const char* forced = std::getenv("OPENBLAS_CORETYPE");
      if (from && forced)
        info.config += std::string(" (joulecut set OPENBLAS_CORETYPE=") + forced +
                       " and restarted: OpenBLAS chose its " + from + " kernels, narrower than this CPU's vectors)";
      if (const std::string better = info.better_kernels(); !better.empty())
        info.config += " (slower than this CPU allows: OpenBLAS' " + better +
                       " kernels use its wider vectors; set OPENBLAS_CORETYPE=" + better +
                       " before the program starts)";
    }
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
