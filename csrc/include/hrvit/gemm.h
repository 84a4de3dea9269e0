// A small register-blocked matrix product for the attention kernels' cache-resident tiles.
//
// Written with GCC/Clang vector extensions: left to the auto-vectorizer, GCC vectorizes these loops
// along k with shuffles and keeps the tile on the stack, which runs about 10x slower.
#pragma once

#include <algorithm>

#include "hrvit/simd.h"

namespace hrvit {

namespace detail {

// C[0:MR, 0:Lanes*NV] (+)= A[0:MR, 0:K] B[0:K, 0:Lanes*NV], the C tile held in vector registers;
// Accumulate = false overwrites C instead of adding to it. TransposedA: A is given as A^T (K x M,
// row stride lda), so a tile's MR broadcasts per k come from one contiguous run.
// Always inlined: as a call, GCC keeps the accumulators in a stack array that it zeroes and reloads,
// which slows the attention kernels' short products (K = head dim): 104 instead of 150 GFLOP/s for
// 128 x 32 x 32 on one AVX-512 core.
template <index_t MR, index_t NV, index_t Lanes, bool Accumulate, bool TransposedA>
__attribute__((always_inline)) inline void gemm_tile(index_t K, const float* A, index_t lda, const float* B,
                                                     index_t ldb, float* C, index_t ldc) {
  typedef typename Vec<Lanes>::type V;
  V c[MR][NV];
  for (index_t r = 0; r < MR; ++r)
    for (index_t t = 0; t < NV; ++t) c[r][t] = Accumulate ? load<V>(C + r * ldc + Lanes * t) : V{};
  for (index_t k = 0; k < K; ++k) {
    V b[NV];
    for (index_t t = 0; t < NV; ++t) b[t] = load<V>(B + k * ldb + Lanes * t);
    for (index_t r = 0; r < MR; ++r) {
      const float a = TransposedA ? A[k * lda + r] : A[r * lda + k];
      for (index_t t = 0; t < NV; ++t) c[r][t] += a * b[t];
    }
  }
  for (index_t r = 0; r < MR; ++r)
    for (index_t t = 0; t < NV; ++t) store(C + r * ldc + Lanes * t, c[r][t]);
}

// Columns [j, N) that do not fill a vector.
template <bool Accumulate, bool TransposedA>
inline void gemm_tail(index_t M, index_t j, index_t N, index_t K, const float* A, index_t lda,
                      const float* B, index_t ldb, float* C, index_t ldc) {
  for (index_t r = 0; r < M; ++r)
    for (index_t col = j; col < N; ++col) {
      float sum = Accumulate ? C[r * ldc + col] : 0.0f;
      for (index_t k = 0; k < K; ++k) sum += (TransposedA ? A[k * lda + r] : A[r * lda + k]) * B[k * ldb + col];
      C[r * ldc + col] = sum;
    }
}

template <index_t MR, bool Accumulate, bool TransposedA>
inline void gemm_rows(index_t N, index_t K, const float* A, index_t lda, const float* B, index_t ldb,
                      float* C, index_t ldc) {
  index_t j = 0;
  for (; j + 2 * kLanes <= N; j += 2 * kLanes)
    gemm_tile<MR, 2, kLanes, Accumulate, TransposedA>(K, A, lda, B + j, ldb, C + j, ldc);
  for (; j + kLanes <= N; j += kLanes)
    gemm_tile<MR, 1, kLanes, Accumulate, TransposedA>(K, A, lda, B + j, ldb, C + j, ldc);
  for (; j + kHalfLanes <= N; j += kHalfLanes)
    gemm_tile<MR, 1, kHalfLanes, Accumulate, TransposedA>(K, A, lda, B + j, ldb, C + j, ldc);
  if (j < N) gemm_tail<Accumulate, TransposedA>(MR, j, N, K, A, lda, B, ldb, C, ldc);
}

// Rows per register tile: eight independent accumulator chains keep both FMA units busy through
// their latency even when C is one vector wide (head dim 16); AVX2's 16 registers hold only four
// rows of two vectors.
constexpr index_t kTileRows = kLanes == 16 ? 8 : 4;

template <bool Accumulate, bool TransposedA = false>
inline void gemm(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* B, index_t ldb,
                 float* C, index_t ldc) {
  const index_t row_step = TransposedA ? 1 : lda;  // from row i of A to row i + 1
  index_t i = 0;
  for (; i + kTileRows <= M; i += kTileRows)
    gemm_rows<kTileRows, Accumulate, TransposedA>(N, K, A + i * row_step, lda, B, ldb, C + i * ldc, ldc);
  for (; i + 4 <= M; i += 4)
    gemm_rows<4, Accumulate, TransposedA>(N, K, A + i * row_step, lda, B, ldb, C + i * ldc, ldc);
  for (; i < M; ++i)
    gemm_rows<1, Accumulate, TransposedA>(N, K, A + i * row_step, lda, B, ldb, C + i * ldc, ldc);
}

}  // namespace detail

// C (M x N, row stride ldc) += A (M x K, row stride lda) * B (K x N, row stride ldb).
inline void gemm_acc(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* B,
                     index_t ldb, float* C, index_t ldc) {
  detail::gemm<true>(M, N, K, A, lda, B, ldb, C, ldc);
}

// C (M x N, row stride ldc) += A B with A given as A^T (K x M, row stride ldat).
inline void gemm_acc_at(index_t M, index_t N, index_t K, const float* AT, index_t ldat, const float* B,
                        index_t ldb, float* C, index_t ldc) {
  detail::gemm<true, true>(M, N, K, AT, ldat, B, ldb, C, ldc);
}

// The same for M a compile-time multiple of the register tile's rows: no remainder loops (whose dead
// code for a constant M draws false GCC warnings in SSE and AVX2 builds). gemm_set_at overwrites C.
namespace detail {
template <index_t M, bool Accumulate>
inline void gemm_at(index_t N, index_t K, const float* AT, index_t ldat, const float* B, index_t ldb,
                    float* C, index_t ldc) {
  static_assert(M % kTileRows == 0, "whole register tiles");
  for (index_t i = 0; i < M; i += kTileRows)
    gemm_rows<kTileRows, Accumulate, true>(N, K, AT + i, ldat, B, ldb, C + i * ldc, ldc);
}
}  // namespace detail
template <index_t M>
inline void gemm_acc_at(index_t N, index_t K, const float* AT, index_t ldat, const float* B, index_t ldb,
                        float* C, index_t ldc) {
  detail::gemm_at<M, true>(N, K, AT, ldat, B, ldb, C, ldc);
}
template <index_t M>
inline void gemm_set_at(index_t N, index_t K, const float* AT, index_t ldat, const float* B, index_t ldb,
                        float* C, index_t ldc) {
  detail::gemm_at<M, false>(N, K, AT, ldat, B, ldb, C, ldc);
}

// C (M x N, row stride ldc) = A (M x K, row stride lda) * B (K x N, row stride ldb).
inline void gemm_set(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* B,
                     index_t ldb, float* C, index_t ldc) {
  detail::gemm<false>(M, N, K, A, lda, B, ldb, C, ldc);
}

// dst[c * ld_dst + i] = scale * rows[i][c] for c < cols and i < n <= kLanes: up to kLanes rows become
// columns; a null row reads as zeros. With AVX-512, 16 x 16 blocks are transposed in registers
// (64 shuffles instead of 256 scalar loads and stores each); masked loads and stores touch nothing
// past a row's cols or a column's n.
inline void rows_to_columns(const float* const* rows, index_t n, index_t cols, float scale, float* dst,
                            index_t ld_dst) {
#if defined(__AVX512F__)
  static_assert(kLanes == 16, "AVX-512 vectors hold 16 floats");
  const __mmask16 column_mask = static_cast<__mmask16>((1u << n) - 1);
  const __m512 factor = _mm512_set1_ps(scale);
  for (index_t c0 = 0; c0 < cols; c0 += 16) {
    const index_t width = std::min<index_t>(16, cols - c0);
    const __mmask16 row_mask = static_cast<__mmask16>((1u << width) - 1);
    __m512 r[16], t[16];
    for (index_t i = 0; i < 16; ++i)
      r[i] = i < n && rows[i] ? _mm512_mul_ps(_mm512_maskz_loadu_ps(row_mask, rows[i] + c0), factor)
                              : _mm512_setzero_ps();
    // Within each 128-bit lane L: t[4g + c] holds column 4L + c of rows 4g .. 4g + 3.
    for (index_t g = 0; g < 4; ++g) {
      const __m512 lo01 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
      const __m512 hi01 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
      const __m512 lo23 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
      const __m512 hi23 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
      t[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(lo01), _mm512_castps_pd(lo23)));
      t[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(lo01), _mm512_castps_pd(lo23)));
      t[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(hi01), _mm512_castps_pd(hi23)));
      t[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(hi01), _mm512_castps_pd(hi23)));
    }
    // Column 4L + c gathers lane L of t[c], t[4 + c], t[8 + c], t[12 + c]: a 4 x 4 transpose of lanes.
    for (index_t c = 0; c < 4; ++c) {
      const __m512 a = _mm512_shuffle_f32x4(t[c], t[4 + c], 0x44);
      const __m512 b = _mm512_shuffle_f32x4(t[c], t[4 + c], 0xee);
      const __m512 e = _mm512_shuffle_f32x4(t[8 + c], t[12 + c], 0x44);
      const __m512 f = _mm512_shuffle_f32x4(t[8 + c], t[12 + c], 0xee);
      r[c] = _mm512_shuffle_f32x4(a, e, 0x88);
      r[4 + c] = _mm512_shuffle_f32x4(a, e, 0xdd);
      r[8 + c] = _mm512_shuffle_f32x4(b, f, 0x88);
      r[12 + c] = _mm512_shuffle_f32x4(b, f, 0xdd);
    }
    for (index_t c = 0; c < width; ++c) _mm512_mask_storeu_ps(dst + (c0 + c) * ld_dst, column_mask, r[c]);
  }
#else
  for (index_t c = 0; c < cols; ++c)
    for (index_t i = 0; i < n; ++i) dst[c * ld_dst + i] = rows[i] ? scale * rows[i][c] : 0.0f;
#endif
}

// dst (cols x rows, row stride ld_dst) = scale * transpose of src (rows x cols, row stride ld_src).
inline void transpose(index_t rows, index_t cols, const float* src, index_t ld_src, float* dst,
                      index_t ld_dst, float scale = 1.0f) {
  const float* row_ptrs[kLanes];
  for (index_t i0 = 0; i0 < rows; i0 += kLanes) {
    const index_t n = std::min(kLanes, rows - i0);
    for (index_t i = 0; i < n; ++i) row_ptrs[i] = src + (i0 + i) * ld_src;
    rows_to_columns(row_ptrs, n, cols, scale, dst + i0, ld_dst);
  }
}

}  // namespace hrvit
