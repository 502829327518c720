#include "joulecut/threads.h"

#include <ATen/Parallel.h>

#include "joulecut/platform.h"

namespace joulecut {

int configure_threads(int threads) {
  const int n = threads > 0 ? threads : logical_cores();
  at::set_num_threads(n);
  set_blas_threads(1);
  return n;
}

}  // namespace joulecut
