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
