// bfloat16 storage for the CPU kernels' inputs and outputs: the kernels compute in fp32 and convert at
// their loads and stores, so a bf16 model (CPU autocast) pays no whole-tensor conversion passes. No
// special instructions: the conversions are integer shifts and adds, which the compiler vectorises.
#pragma once

#include <cstdint>

#include "hrvit/simd.h"

namespace hrvit {

// The bits of a bfloat16: the upper half of an fp32.
using bf16_t = uint16_t;

inline float to_float(float x) { return x; }
inline float to_float(bf16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, as PyTorch's float -> bfloat16 conversion; NaN stays NaN (the quiet 0x7FC0).
inline bf16_t to_bf16(float f) {
  uint32_t bits;
  __builtin_memcpy(&bits, &f, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<bf16_t>((bits & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : rounded);
}

// Stores an fp32 value as the element type T of an output.
template <typename T>
inline T from_float(float x);
template <>
inline float from_float<float>(float x) { return x; }
template <>
inline bf16_t from_float<bf16_t>(float x) { return to_bf16(x); }

// One vector of kLanes bf16 values to fp32 and back (the same rounding as to_bf16), for kernels that keep
// their rows in registers.
typedef uint16_t vec_bf16 __attribute__((vector_size(kLanes * sizeof(uint16_t))));
typedef uint32_t vecu __attribute__((vector_size(kLanes * sizeof(uint32_t))));
inline vecf load_bf16(const bf16_t* p) {
  vec_bf16 half;
  __builtin_memcpy(&half, p, sizeof(half));
  const vecu bits = __builtin_convertvector(half, vecu) << 16;
  vecf f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}
inline void store_bf16(bf16_t* p, vecf f) {
  vecu bits;
  __builtin_memcpy(&bits, &f, sizeof(bits));
  const vecu rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const vecu nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  const vec_bf16 half = __builtin_convertvector(nan ? vecu{} + 0x7FC0u : rounded, vec_bf16);
  __builtin_memcpy(p, &half, sizeof(half));
}

// dst[0, n) = src[0, n) converted, for rows between an fp32 tile and a tensor of element type T.
template <typename T>
inline void load_row(const T* __restrict__ src, index_t n, float* __restrict__ dst) {
  if constexpr (sizeof(T) == sizeof(float)) {
    copy_row(src, n, dst);
  } else {
    for (index_t j = 0; j < n; ++j) dst[j] = to_float(src[j]);
  }
}
template <typename T>
inline void store_row(const float* __restrict__ src, index_t n, T* __restrict__ dst) {
  if constexpr (sizeof(T) == sizeof(float)) {
    copy_row(src, n, dst);
  } else {
    for (index_t j = 0; j < n; ++j) dst[j] = to_bf16(src[j]);
  }
}

}  // namespace hrvit
