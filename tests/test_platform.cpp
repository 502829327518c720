// Platform facts the manifests record.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <string>

#include "joulecut/platform.h"

TEST_CASE("the BLAS a LibTorch carries is read from its build settings", "[platform]") {
  const auto mkl = joulecut::blas_from_build_config(
      "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, CUDA_VERSION=13.0, LAPACK_INFO=mkl, TORCH_VERSION=2.11.0");
  CHECK(mkl.name == "MKL (inside LibTorch)");
  CHECK(mkl.config == "from LibTorch's build settings: BLAS_INFO=mkl");
  CHECK_FALSE(mkl.is_reference());
  CHECK(joulecut::blas_from_build_config("BLAS_INFO=open\n").name == "OpenBLAS (inside LibTorch)");
  CHECK(joulecut::blas_from_build_config("Build settings: BUILD_TYPE=Release").name == "none loaded");
  CHECK(joulecut::blas_from_build_config("").name == "none loaded");
}

TEST_CASE("the machine's CPU time is read from /proc/stat, and grows with work", "[platform]") {
  const joulecut::SystemCpuTimes before = joulecut::system_cpu_times();
  REQUIRE(before.valid);
  volatile double sink = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(150)) sink = sink + 1;
  const joulecut::SystemCpuTimes after = joulecut::system_cpu_times();
  CHECK(after.busy - before.busy >= 0.05);  // 150 ms of this thread's spinning, counted in 10 ms ticks
  CHECK(after.steal >= before.steal);
}

TEST_CASE("OpenBLAS kernels narrower than the CPU's vectors are named with the set to use instead", "[platform]") {
  using joulecut::better_openblas_kernels;
  // Debian's 0.3.21 on Emerald Rapids (family 6 model 207): the generic Prescott set.
  CHECK(better_openblas_kernels("Prescott", 3) == "SkylakeX");
  CHECK(better_openblas_kernels("Haswell", 3) == "SkylakeX");
  CHECK(better_openblas_kernels("Nehalem", 2) == "Haswell");
  CHECK(better_openblas_kernels("Core2", 1) == "Sandybridge");
  // Already as wide as the CPU, or wider than it (a forced set), or a name it does not know.
  CHECK(better_openblas_kernels("SkylakeX", 3).empty());
  CHECK(better_openblas_kernels("Cooperlake", 3).empty());
  CHECK(better_openblas_kernels("Zen", 2).empty());
  CHECK(better_openblas_kernels("Prescott", 0).empty());
  CHECK(better_openblas_kernels("SkylakeX", 2).empty());
  CHECK(better_openblas_kernels("POWER10", 3).empty());
}

TEST_CASE("the CPU's vector level agrees with the flags the kernel reports", "[platform]") {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  if (flags.empty()) {
    WARN("no x86 flags in /proc/cpuinfo: not checked");
    return;
  }
  const auto has = [&](const char* flag) { return flags.find(std::string(" ") + flag + " ") != std::string::npos; };
  const int expected = has("avx512f") && has("avx512bw") && has("avx512dq") && has("avx512vl") ? 3
                       : has("avx2") && has("fma")                                              ? 2
                       : has("avx")                                                             ? 1
                                                                                                : 0;
  CHECK(joulecut::cpu_vector_level() == expected);
}
