// y = x * W^T for a CSR weight W [rows, cols] and a dense row-major x [batch, cols], with Eigen.
// Eigen picks its SIMD width at compile time, so this one file is built for the build
// machine's CPU (-march=native, see JOULECUT_NATIVE_KERNELS in CMakeLists.txt). It is the
// only file that includes Eigen: one instruction set, no clashing template copies.
#include <Eigen/Dense>
#include <Eigen/SparseCore>

#include <cstdint>
#include <vector>

#include "sparse_kernel.h"

namespace joulecut::kernels {

void sparse_linear_f32(const SparseLinearArgs& a) {
  using Csr = Eigen::Map<const Eigen::SparseMatrix<float, Eigen::RowMajor, std::int32_t>>;
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  const Csr w(a.rows, a.cols, a.nnz, a.row_offsets, a.columns, a.values);
  if (a.batch < 8) {
    // Few rows: one sparse dot product per output, reading x's rows in place.
    Eigen::Map<const ColMajor> xt(a.x, a.cols, a.batch);
    Eigen::Map<ColMajor> yt(a.y, a.rows, a.batch);
    yt.noalias() = w * xt;
    if (a.bias) yt.colwise() += Eigen::Map<const Eigen::VectorXf>(a.bias, a.rows);
    return;
  }
  // Many rows: transpose x once, so each non-zero weight scales a contiguous row of the batch
  // (a vectorized axpy), then transpose the result back.
  thread_local std::vector<float> xt_buffer, yt_buffer;
  xt_buffer.resize(std::size_t(a.cols * a.batch));
  yt_buffer.resize(std::size_t(a.rows * a.batch));
  Eigen::Map<RowMajor> xt(xt_buffer.data(), a.cols, a.batch);
  Eigen::Map<RowMajor> yt(yt_buffer.data(), a.rows, a.batch);
  xt.noalias() = Eigen::Map<const RowMajor>(a.x, a.batch, a.cols).transpose();
  yt.noalias() = w * xt;
  Eigen::Map<RowMajor> y(a.y, a.batch, a.rows);
  if (a.bias)
    y.noalias() = yt.transpose().rowwise() + Eigen::Map<const Eigen::RowVectorXf>(a.bias, a.rows);
  else
    y.noalias() = yt.transpose();
}

const char* sparse_kernel_isa() {
#if defined(__AVX512F__)
  return "eigen-csr-avx512";
#elif defined(__AVX2__)
  return "eigen-csr-avx2";
#else
  return "eigen-csr-sse2";
#endif
}

}  // namespace joulecut::kernels
