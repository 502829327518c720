// Platform facts the manifests record.
#include <catch2/catch.hpp>

#include <chrono>

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
