// Branch-free float approximations of the CPU kernels: exponentials (base e and 2), the normal CDF
// and density, the exact-erf GELU and its derivative.
#pragma once

#include <cmath>

#include "hrvit/simd.h"

namespace hrvit {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.69314718055994531f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// 2^n for a float n holding an integer in [-127, 128]: n + 127 placed in the exponent bits.
inline float pow2_of_integer(float n) {
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float p;
  __builtin_memcpy(&p, &bits, sizeof(p));
  return p;
}
inline vecf pow2_of_integer(vecf n) {
  const veci bits = (__builtin_convertvector(n, veci) + 127) << 23;
  return (vecf)bits;  // a cast between vector types of one size keeps the bits
}

// e^r for r = x - n ln 2, n = round(x / ln 2), so |r| <= ln 2 / 2 (ln 2 subtracted in two parts, the
// first exact in float): Cephes' degree-6 polynomial, relative error about 2 ulp.
template <typename T>
inline T exp_of_remainder(T x, T n) {
  const T r = x - n * 0.693359375f + n * 2.12194440e-4f;
  T p = T{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// exp(x) = 2^n e^r for a float or a vecf, branch-free (std::exp does not vectorize without
// -ffast-math). Inputs below -87 flush to 0 (as -inf gives 0), above 88 saturate; NaN passes through.
template <typename T>
inline T exp_approx(T x) {
  const T lo = T{} - 87.0f, hi = T{} + 88.0f;
  x = x < lo ? lo : (x > hi ? hi : x);
  // Round to nearest by adding and subtracting 1.5 * 2^23 (std::floor/nearbyint calls do not vectorize).
  const T n = (x * kLog2e + 12582912.0f) - 12582912.0f;
  return exp_of_remainder(x, n) * pow2_of_integer(n);
}

#if defined(__AVX512F__)
// The same for 16 floats with AVX-512, where the rounding and the scaling by 2^n are one instruction
// each (vrndscaleps, vscalefps): ~14 instead of ~18 vector operations, the same results. The GELU
// uses it (the attention softmax uses exp2_approx below).
inline vec16f exp_approx(vec16f x) {
  x = x < -87.0f ? vec16f{} - 87.0f : (x > 88.0f ? vec16f{} + 88.0f : x);
  const vec16f n = (vec16f)_mm512_roundscale_ps((__m512)(x * kLog2e),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return (vec16f)_mm512_scalef_ps((__m512)exp_of_remainder(x, n), (__m512)n);
}
#endif

// 2^r for |r| <= 1/2: a degree-5 polynomial fitted for least relative error, at most 2.2e-7.
template <typename T>
inline T exp2_of_remainder(T r) {
  T p = T{} + 1.3266970636e-3f;
  p = p * r + 9.6754599362e-3f;
  p = p * r + 5.5507425219e-2f;
  p = p * r + 2.4022121727e-1f;
  p = p * r + 6.9314694405e-1f;
  return p * r + 1.0000001192f;
}

// 2^x, as exp_approx but with no change of base: r = x - n is exact, which saves the multiply by
// log2 e and the two-part subtraction of n ln 2. The attention kernels' softmax works in base 2 (its
// logits scaled by log2 e) for this. Inputs below -126 give exactly 0 (and -inf gives 0), so no
// subnormal ever leaves it: a softmax of sharp logits would otherwise feed subnormals to the matrix
// products, where each costs a microcode assist (an attention_to_mask forward on logits of standard
// deviation 64 took 40x longer with them). Inputs above 127 saturate; NaN passes through.
template <typename T>
inline T exp2_approx(T x) {
  const T lo = T{} - 126.0f, hi = T{} + 127.0f;
  const T clamped = x < lo ? lo : (x > hi ? hi : x);
  const T n = (clamped + 12582912.0f) - 12582912.0f;
  const T y = exp2_of_remainder(clamped - n) * pow2_of_integer(n);
  return x < lo ? T{} : y;
}

#if defined(__AVX512F__)
// With AVX-512: 10 vector operations; vscalefps saturates to inf above 127 by itself.
inline vec16f exp2_approx(vec16f x) {
  const __mmask16 kept = _mm512_cmp_ps_mask((__m512)x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // or NaN
  const vec16f n = (vec16f)_mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return (vec16f)_mm512_maskz_scalef_ps(kept, (__m512)exp2_of_remainder(x - n), (__m512)n);
}
#endif

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

// Exact (erf) GELU x * Phi(x), as torch.nn.functional.gelu(approximate="none") to about 2e-7
// absolute per unit of x: Phi(x) = 1/2 + x P(x^2) / Q(x^2), a rational erf with its argument clamped to
// [-4, 4] (coefficients and error from python/fit_gelu_erf.py). About 20 vector operations against
// about 30 for normal_cdf_pdf (the A&S erf and an exponential); the GELU was a third of the MixCFN
// forward.
template <typename T>
inline T gelu(T x) {
  const float lim = 5.656854249f;  // 4 sqrt 2
  T xc = x < -lim ? T{} - lim : x;
  xc = xc > lim ? T{} + lim : xc;
  const T s = xc * xc;
  T num = T{} + 1.061548210e-10f;
  num = num * s - 2.199118043e-08f;
  num = num * s + 3.437594842e-06f;
  num = num * s + 1.897879702e-04f;
  num = num * s + 4.634909797e-03f;
  num = num * s + 3.782599047e-02f;
  num = num * s + 3.989421129e-01f;
  T den = T{} + 6.864742318e-05f;
  den = den * s + 1.944243908e-03f;
  den = den * s + 3.020322882e-02f;
  den = den * s + 2.614795268e-01f;
  den = den * s + 1.0f;
  return x * (0.5f + xc * num / den);
}

// Its derivative Phi(x) + x phi(x), with Phi and phi sharing one exponential (normal_cdf_pdf).
inline float gelu_grad(float x) {
  const NormalCdfPdf n = normal_cdf_pdf(x);
  return n.cdf + x * n.pdf;
}

// g[i] = grad_out[i] * GELU'(g[i]): restrict pointers so the loop vectorizes.
inline void mul_gelu_grad_inplace(const float* __restrict__ grad_out, float* __restrict__ g, index_t n) {
  for (index_t i = 0; i < n; ++i) g[i] = grad_out[i] * gelu_grad(g[i]);
}

}  // namespace hrvit
