#include "joulecut/threads.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>

#include "joulecut/platform.h"

namespace joulecut {

BlasInfo blas_in_use() {
  BlasInfo loaded = blas_info();
  if (!loaded.library.empty()) return loaded;
  return blas_from_build_config(at::show_config());
}

int configure_threads(int threads) {
  const int n = threads > 0 ? threads : logical_cores();
  at::set_num_threads(n);
  set_blas_threads(1);
  return n;
}

}  // namespace joulecut
