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

// exp(x) for float, branch-free so that loops calling it vectorize (std::exp does not without
// -ffast-math). Cephes' range reduction x = n ln2 + r and degree-6 polynomial: relative error about
// 2 ulp; inputs below -87 flush to 0 (as -inf gives 0), above 88 saturate.
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // NaN passes through
  // Round to nearest by adding and subtracting 1.5 * 2^23 (std::floor/nearbyint calls do not vectorize).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

// The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 and density phi(x), branch-free.
// erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7); exp(-x^2/2) is shared by both.
struct NormalCdfPdf {
  float cdf, pdf;
};
inline NormalCdfPdf normal_cdf_pdf(float x) {
  const float z = std::fabs(x) * kInvSqrt2;
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float gauss = exp_approx(-z * z);  // = exp(-x^2 / 2)
  const float erf_abs = 1.0f - poly * gauss;
  const float erf = std::copysign(erf_abs, x);
  return {0.5f * (1.0f + erf), kInvSqrt2Pi * gauss};
}

// Exact (erf) GELU x * Phi(x) and its derivative Phi(x) + x phi(x), as
// torch.nn.functional.gelu(approximate="none") to about 1e-7 absolute per unit of x.
inline float gelu(float x) { return x * normal_cdf_pdf(x).cdf; }
inline float gelu_grad(float x) {
  const NormalCdfPdf n = normal_cdf_pdf(x);
  return n.cdf + x * n.pdf;
}

// p[i] = GELU(p[i]) and g[i] = grad_out[i] * GELU'(g[i]): separate functions with restrict pointers so
// the loops vectorize.
inline void gelu_inplace(float* __restrict__ p, index_t n) {
  for (index_t i = 0; i < n; ++i) p[i] = gelu(p[i]);
}
inline void mul_gelu_grad_inplace(const float* __restrict__ grad_out, float* __restrict__ g, index_t n) {
  for (index_t i = 0; i < n; ++i) g[i] = grad_out[i] * gelu_grad(g[i]);
}

// Sum and maximum of x[0:n] with 16 independent lanes, so the loops vectorize without -ffast-math
// (a single float accumulator forbids reordering).
inline float sum_of(const float* __restrict__ x, index_t n) {
  float lanes[16] = {};
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (index_t j = 0; j < 16; ++j) lanes[j] += x[i + j];
  float total = 0.0f;
  for (index_t j = 0; j < 16; ++j) total += lanes[j];
  for (; i < n; ++i) total += x[i];
  return total;
}
inline float max_of(const float* __restrict__ x, index_t n, float init) {
  float lanes[16];
  for (index_t j = 0; j < 16; ++j) lanes[j] = init;
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (index_t j = 0; j < 16; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
  float best = init;
  for (index_t j = 0; j < 16; ++j) best = lanes[j] > best ? lanes[j] : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}
// x[i] = exp(x[i] - shift).
inline void exp_shifted_inplace(float* __restrict__ x, index_t n, float shift) {
  for (index_t i = 0; i < n; ++i) x[i] = exp_approx(x[i] - shift);
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
