// Vector types, the widest vector of the build's CPU, loads, stores and row copies of the CPU kernels.
// No torch headers: kernels see raw pointers, sizes and strides.
#pragma once

#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace hrvit {


using index_t = int64_t;

// Vectors of 2, 4, 8 and 16 floats.
typedef float vec2f __attribute__((vector_size(2 * sizeof(float))));
typedef float vec4f __attribute__((vector_size(4 * sizeof(float))));
typedef float vec8f __attribute__((vector_size(8 * sizeof(float))));
typedef float vec16f __attribute__((vector_size(16 * sizeof(float))));
template <index_t Lanes>
struct Vec;
template <>
struct Vec<2> { typedef vec2f type; };
template <>
struct Vec<4> { typedef vec4f type; };
template <>
struct Vec<8> { typedef vec8f type; };
template <>
struct Vec<16> { typedef vec16f type; };

// The widest hardware vector (16 floats with AVX-512, 8 with AVX, else 4) and the next narrower one,
// which covers a remainder of half a vector (head dim 24 = 16 + 8).
#if defined(__AVX512F__)
constexpr index_t kLanes = 16;
#elif defined(__AVX__)
constexpr index_t kLanes = 8;
#else
constexpr index_t kLanes = 4;
#endif
constexpr index_t kHalfLanes = kLanes / 2;
typedef Vec<kLanes>::type vecf;
typedef int32_t veci __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Unaligned loads and stores (memcpy: a template argument loses the typedef's aligned(4)).
template <typename V = vecf>
inline V load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof(V)); }

// The sum of a vector's lanes.
inline float lane_sum(vecf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(v);
#else
  float total = 0.0f;
  for (index_t k = 0; k < kLanes; ++k) total += v[k];
  return total;
#endif
}

// dst[0, n) = src[0, n) for short rows such as one head's slice of a token: std::copy calls memmove,
// which costs more than copying 32 floats (a tenth of the attention-to-mask forward went there).
inline void copy_row(const float* __restrict__ src, index_t n, float* __restrict__ dst) {
  index_t j = 0;
  for (; j + kLanes <= n; j += kLanes) store(dst + j, load(src + j));
  if (j + kHalfLanes <= n) {
    typedef Vec<kHalfLanes>::type half;
    store(dst + j, load<half>(src + j));
    j += kHalfLanes;
  }
  for (; j < n; ++j) dst[j] = src[j];
}

// copy_row for rows of a large output that nothing reads again soon (gradients): whole 64-byte lines
// go out with non-temporal stores where dst is aligned, which skips reading lines only to overwrite
// them (the attention-to-mask backward writes one head's d channels at a row stride of C, and spent
// 14% of its time there). A thread that used it calls stores_done() before others read its output.
inline void write_row(const float* __restrict__ src, index_t n, float* __restrict__ dst) {
#if defined(__AVX512F__)
  if (reinterpret_cast<uintptr_t>(dst) % 64 == 0 && n % 16 == 0) {
    for (index_t j = 0; j < n; j += 16) _mm512_stream_ps(dst + j, _mm512_loadu_ps(src + j));
    return;
  }
#endif
  copy_row(src, n, dst);
}
// Orders the non-temporal stores of write_row before the stores that follow (a barrier's flag).
inline void stores_done() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

}  // namespace hrvit
