// bf16 matrix products for the attention kernels on AVX-512-BF16 (vdpbf16ps: each of 16 fp32 lanes adds
// the products of two bf16 pairs), chosen at run time where the CPU has the instructions. Products
// accumulate in fp32; the softmax stays fp32. Compiled into AVX-512 builds (the tiles are 16-lane vectors)
// with their own target attribute, so a build for AVX-512 without BF16 (e.g. -march=skylake-avx512) has them
// too, and uses them only where the CPU it runs on has BF16.
//
// Both products of one key block of attention have the shape C (m x 32 queries, fp32) = A B, with A m
// rows of bf16 whose inner index runs in pairs along the row, and B "pair rows": pair row p holds, for each
// of the 32 query columns i, the two bf16 (b[2p][i], b[2p + 1][i]) side by side (64 bf16). Then C's row
// r is a sum over p of one vdpbf16ps per 16 columns with A's pair (a[r][2p], a[r][2p + 1]) broadcast.
// Logits: A = K (keys x d), B = Q^T in pair rows. Outputs O^T: A = V^T in pairs of keys, B = P^T in pair rows.
#pragma once

#include <cstdint>

#include "hrvit/bf16.h"
#include "hrvit/simd.h"

#if defined(__AVX512F__) && defined(__x86_64__)
#include <immintrin.h>
#define HRVIT_BF16_DOT 1
#define HRVIT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#endif

namespace hrvit {

// Columns of a B pair row: one query block.
constexpr index_t kPairColumns = 32;

// Whether this build has the bf16 products and the CPU it runs on can execute them.
inline bool cpu_has_bf16_dot() {
#ifdef HRVIT_BF16_DOT
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

#ifdef HRVIT_BF16_DOT

// Rows [r0, r0 + Rows) of C = scale * A B (or C += that, with Accumulate): see the top of this file.
template <int Rows, bool Accumulate>
HRVIT_BF16_TARGET inline void dot_pair_rows(index_t r0, index_t kpairs, const bf16_t* A, index_t lda,
                                            const bf16_t* B, float scale, float* C) {
  __m512 acc[Rows][2];
  for (int r = 0; r < Rows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < kpairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(B + p * 2 * kPairColumns);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(B + p * 2 * kPairColumns + kPairColumns);
    for (int r = 0; r < Rows; ++r) {
      uint32_t pair;
      __builtin_memcpy(&pair, A + (r0 + r) * lda + 2 * p, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
  for (int r = 0; r < Rows; ++r)
    for (int h = 0; h < 2; ++h) {
      float* c = C + (r0 + r) * kPairColumns + 16 * h;
      __m512 v = _mm512_mul_ps(acc[r][h], s);
      if (Accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(c));
      _mm512_storeu_ps(c, v);
    }
}

// C (m x 32, row stride 32) = scale * A B, or += with accumulate. A: m rows of 2 * kpairs bf16 (row stride
// lda); B: kpairs pair rows.
HRVIT_BF16_TARGET inline void dot_pairs(index_t m, index_t kpairs, const bf16_t* A, index_t lda, const bf16_t* B,
                                        float scale, bool accumulate, float* C) {
  index_t r = 0;
  for (; r + 4 <= m; r += 4)
    accumulate ? dot_pair_rows<4, true>(r, kpairs, A, lda, B, scale, C)
               : dot_pair_rows<4, false>(r, kpairs, A, lda, B, scale, C);
  for (; r < m; ++r)
    accumulate ? dot_pair_rows<1, true>(r, kpairs, A, lda, B, scale, C)
               : dot_pair_rows<1, false>(r, kpairs, A, lda, B, scale, C);
}

// Pair rows of P^T from n rows of 32 fp32 probabilities (row stride 32): pair row p holds rows 2p and
// 2p + 1 interleaved, rounded to bf16 (an odd n's last pair row has zeros for the missing row).
HRVIT_BF16_TARGET inline void to_pair_rows(const float* P, index_t n, bf16_t* out) {
  // Word j of the interleaved result: element j / 2 of row 2p (j even) or of row 2p + 1 (j odd).
  alignas(64) static const uint16_t kLow[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                8,  40, 9,  41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHigh[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i low = _mm512_load_si512(kLow), high = _mm512_load_si512(kHigh);
  for (index_t p = 0; 2 * p < n; ++p) {
    const float* r0 = P + 2 * p * kPairColumns;
    const __m512i a = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r0 + 16), _mm512_loadu_ps(r0));
    __m512i b = _mm512_setzero_si512();
    if (2 * p + 1 < n) {
      const float* r1 = r0 + kPairColumns;
      b = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r1 + 16), _mm512_loadu_ps(r1));
    }
    _mm512_storeu_si512(out + p * 2 * kPairColumns, _mm512_permutex2var_epi16(a, low, b));
    _mm512_storeu_si512(out + p * 2 * kPairColumns + kPairColumns, _mm512_permutex2var_epi16(a, high, b));
  }
}

#endif  // HRVIT_BF16_DOT

}  // namespace hrvit
