// Platform facts the manifests record.
#include <catch2/catch.hpp>

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
