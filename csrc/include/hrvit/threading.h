// OpenMP work sharing of the CPU kernels.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include "hrvit/simd.h"

namespace hrvit {

// Runs body(i) for i in [0, n) on num_threads OpenMP threads (the caller passes torch's setting).
template <typename Body>
inline void parallel_for(index_t n, int num_threads, Body body) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(num_threads > 0 ? num_threads : 1)
  for (index_t i = 0; i < n; ++i) body(i);
#else
  (void)num_threads;
  for (index_t i = 0; i < n; ++i) body(i);
#endif
}

}  // namespace hrvit
