// Shared helpers of the CPU kernels. No torch headers: kernels see raw pointers, sizes and strides.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace hrvit {

using index_t = int64_t;

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// Exact (erf) GELU and its derivative, as torch.nn.functional.gelu(approximate="none").
inline float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2)); }
inline float gelu_grad(float x) {
  return 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}

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
