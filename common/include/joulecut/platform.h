#pragma once
// What the process runs on: CPU, BLAS actually loaded, thread settings. Torch-free.
#include <string>

namespace joulecut {

struct BlasInfo {
  std::string library;  // resolved path of the BLAS shared object loaded in this process
  std::string name;     // "OpenBLAS", "reference BLAS (netlib)", "BLIS", "MKL", or "unknown"
  std::string config;   // OpenBLAS' own description (version, kernel), when available
  int threads = -1;     // BLAS' own thread count, when it can tell (-1: unknown)
  std::string kernels;   // OpenBLAS only: the kernel set it runs ("Prescott", "SkylakeX"...)
  bool is_reference() const { return name.rfind("reference", 0) == 0; }
  // The kernel set this CPU runs best when `kernels` is narrower (better_openblas_kernels), else "".
  std::string better_kernels() const;
};

// Inspects the loaded libraries (dl_iterate_phdr) and OpenBLAS' exported functions.
BlasInfo blas_info();

// OpenBLAS picks its kernels from the CPU model when it loads. A model it does not know (Emerald
// Rapids, family 6 model 207, under Debian's 0.3.21) gets the generic Prescott (SSE3) kernels:
// fp32 Linear layers ran 3.4x slower at batch 64 here than with its AVX-512 kernels, a slow
// baseline that inflates every int8 ratio. The best kernel set for an instruction-set level:
// "SkylakeX" (AVX-512 F/BW/DQ/VL), "Haswell" (AVX2 and FMA), "Sandybridge" (AVX), "" (none of
// these); `kernels` is OpenBLAS' name for its kernel set. Returns "" when `kernels` already uses
// the CPU's widest vectors (or is a name this function does not know).
std::string better_openblas_kernels(const std::string& kernels, int cpu_vector_level);
// 3: AVX-512 F/BW/DQ/VL, 2: AVX2 and FMA, 1: AVX, 0: none of these (what this CPU and OS run).
int cpu_vector_level();

// For executables, first thing in main(): when the loaded OpenBLAS runs kernels narrower than
// the CPU's (see better_openblas_kernels) and OPENBLAS_CORETYPE is not set, sets it to the
// better set and execs this program again with the same arguments (the variable is read only
// when the library loads). blas_info() then says so. Returns only when it did not restart:
// nothing to do, OPENBLAS_CORETYPE already set, or the exec failed.
void restart_with_better_openblas_kernels(char** argv);

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
