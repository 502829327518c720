#pragma once
// What the process runs on: CPU, BLAS actually loaded, thread settings. Torch-free.
#include <string>

namespace joulecut {

struct BlasInfo {
  std::string library;  // resolved path of the BLAS shared object loaded in this process
  std::string name;     // "OpenBLAS", "reference BLAS (netlib)", "BLIS", "MKL", or "unknown"
  std::string config;   // OpenBLAS' own description (version, kernel), when available
  int threads = -1;     // BLAS' own thread count, when it can tell (-1: unknown)
  bool is_reference() const { return name.rfind("reference", 0) == 0; }
};

// Inspects the loaded libraries (dl_iterate_phdr) and OpenBLAS' exported functions.
BlasInfo blas_info();

// The BLAS a LibTorch build carries inside its own library, read from its build settings
// (at::show_config(): "BLAS_INFO=mkl"), for builds that load no BLAS library of their own
// (PyPI's wheels link MKL into libtorch_cpu). name "none loaded" when the settings say nothing.
BlasInfo blas_from_build_config(const std::string& config);

// OpenBLAS runs its own thread pool: when LibTorch runs its own threads, the two pools
// oversubscribe the cores (training was 3-5x slower here). Setting the environment variable
// is too late once the library is loaded, so this calls openblas_set_num_threads if present.
// Returns false when the loaded BLAS has no such function.
bool set_blas_threads(int threads);

// The whole machine's CPU time so far, from /proc/stat, in seconds summed over logical cores:
// busy (user, nice, system, irq, softirq), and steal (taken by the hypervisor for other guests).
// valid is false where /proc/stat cannot be read.
struct SystemCpuTimes {
  double busy = 0, steal = 0;
  bool valid = false;
};
SystemCpuTimes system_cpu_times();

std::string cpu_model();
int logical_cores();
std::string kernel_release();

}  // namespace joulecut
