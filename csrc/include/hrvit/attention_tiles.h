// Tile helpers shared by the attention kernels: gathering token rows into cache-resident tiles and
// the score products S = A B^T on key blocks of kKeyBlock columns.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hrvit/gemm.h"
#include "hrvit/kernels.h"

namespace hrvit {

constexpr index_t kKeyBlock = 128;
constexpr index_t kQueryBlock = 32;

// One key block of an online (flash-style) softmax for m query rows: S (m x n, row stride
// kKeyBlock) holds the scaled logits and becomes the unnormalised probabilities; the running row
// maximum mx, row sum l and output accumulator acc (m x d) are rescaled, and acc += P V_block
// (V_block: n x d, row stride ld_v).
inline void online_softmax_block(float* S, index_t m, index_t n, const float* V_block, index_t ld_v,
                                 index_t d, float* mx, float* l, float* acc) {
  for (index_t i = 0; i < m; ++i) {
    float* row = S + i * kKeyBlock;
    const float new_max = max_of(row, n, mx[i]);
    const float alpha = exp_approx(mx[i] - new_max);  // 0 on the first block (mx = -inf)
    const float row_sum = exp_shifted_inplace(row, n, new_max);
    for (index_t c = 0; c < d; ++c) acc[i * d + c] *= alpha;
    l[i] = l[i] * alpha + row_sum;
    mx[i] = new_max;
  }
  gemm_acc(m, d, n, S, kKeyBlock, V_block, ld_v, acc, d);
}

// Backward of softmax on one block: S (scaled logits) becomes P = exp(S - lse) and dP (= dO V^T)
// becomes dS = P * (dP - D), row by row.
inline void softmax_backward_block(float* S, float* dP, index_t m, index_t n, const float* lse,
                                   const float* D) {
  for (index_t i = 0; i < m; ++i) {
    float* __restrict__ p = S + i * kKeyBlock;
    float* __restrict__ ds = dP + i * kKeyBlock;
    exp_shifted_inplace(p, n, lse[i]);
    for (index_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - D[i]);
  }
}

// rows[i][d] = t[batch][tokens[i]][c0 + d]; if transposed, cols[d][i] instead.
inline void gather(TokenTensor t, index_t batch, const std::vector<index_t>& tokens, index_t c0, index_t d,
            float* dst, bool transposed) {
  const index_t L = static_cast<index_t>(tokens.size());
  for (index_t i = 0; i < L; ++i) {
    const float* src = t.data + batch * t.sb + tokens[i] * t.sn + c0;
    if (transposed)
      for (index_t j = 0; j < d; ++j) dst[j * L + i] = src[j];
    else
      std::copy(src, src + d, dst + i * d);
  }
}

// S (m x n, row stride kKeyBlock) = A (m x d) * BT[:, j0:j0+n] (BT is d x L, row stride ld_bt).
inline void scores(const float* A, index_t m, const float* BT, index_t ld_bt, index_t j0, index_t n,
                   index_t d, float* S) {
  gemm_set(m, n, d, A, d, BT + j0, ld_bt, S, kKeyBlock);
}

// Scratch of one thread for the two functions below.
struct AttentionScratch {
  std::vector<float> S = std::vector<float>(kQueryBlock * kKeyBlock);
  std::vector<float> dP = std::vector<float>(kQueryBlock * kKeyBlock);
  std::vector<float> T = std::vector<float>(kKeyBlock * kQueryBlock);
  std::vector<float> mx = std::vector<float>(kQueryBlock), l = std::vector<float>(kQueryBlock);
};

// One head's attention for m <= kQueryBlock query rows Q (m x d, already multiplied by the scale)
// against Lk keys (KT: d x Lk, row stride ld_kt) and values (V: Lk x d, row stride ld_v). Writes the
// normalised output rows to out (m x d) and each row's log-sum-exp to lse. on_logits(j0, n, S) sees
// each key block's scaled logits (row stride kKeyBlock) before the softmax.
template <typename OnLogits>
void attend_rows(const float* Q, index_t m, const float* KT, index_t ld_kt, const float* V, index_t ld_v,
                 index_t Lk, index_t d, AttentionScratch& w, float* out, float* lse, OnLogits on_logits) {
  std::fill(w.mx.begin(), w.mx.begin() + m, -std::numeric_limits<float>::infinity());
  std::fill(w.l.begin(), w.l.begin() + m, 0.0f);
  std::fill(out, out + m * d, 0.0f);
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
    const index_t n = std::min(kKeyBlock, Lk - j0);
    scores(Q, m, KT, ld_kt, j0, n, d, w.S.data());
    on_logits(j0, n, w.S.data());
    online_softmax_block(w.S.data(), m, n, V + j0 * ld_v, ld_v, d, w.mx.data(), w.l.data(), out);
  }
  for (index_t i = 0; i < m; ++i) {
    const float inv = 1.0f / w.l[i];
    for (index_t c = 0; c < d; ++c) out[i * d + c] *= inv;
    lse[i] = w.mx[i] + std::log(w.l[i]);
  }
}

// The same attention with queries as columns: S^T = K Q^T (keys x queries), so the softmax
// statistics of a query are lanes of a vector (no per-row horizontal reductions) and both products
// have kQueryBlock columns whatever the head dim. Faster than attend_rows for the short stripes and
// small head dims of HRViT's first branches.
//
// QT: d x kQueryBlock (scaled; columns past the real queries may hold anything finite), K: Lk x d
// (row stride ld_k), VT: d x Lk (row stride ld_vt). Writes OT (d x kQueryBlock, normalised) and lse
// (kQueryBlock). on_logits(j0, n, ST) sees each key block's scaled logits S^T (n x kQueryBlock)
// before the softmax.
template <typename OnLogits>
void attend_columns(const float* QT, const float* K, index_t ld_k, const float* VT, index_t ld_vt,
                    index_t Lk, index_t d, AttentionScratch& w, float* OT, float* lse, OnLogits on_logits) {
  constexpr index_t kVecs = kQueryBlock / kLanes;
  static_assert(kQueryBlock % kLanes == 0, "a query block is whole vectors");
  vecf mx[kVecs], l[kVecs];
  for (index_t t = 0; t < kVecs; ++t) {
    mx[t] = vecf{} - std::numeric_limits<float>::infinity();
    l[t] = vecf{};
  }
  std::fill(OT, OT + d * kQueryBlock, 0.0f);
  float* ST = w.S.data();  // n x kQueryBlock
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
    const index_t n = std::min(kKeyBlock, Lk - j0);
    gemm_set(n, kQueryBlock, d, K + j0 * ld_k, ld_k, QT, kQueryBlock, ST, kQueryBlock);
    on_logits(j0, n, static_cast<const float*>(ST));
    vecf new_max[kVecs], alpha[kVecs], sum[kVecs];
    for (index_t t = 0; t < kVecs; ++t) new_max[t] = mx[t];
    for (index_t r = 0; r < n; ++r)
      for (index_t t = 0; t < kVecs; ++t) {
        const vecf x = load(ST + r * kQueryBlock + kLanes * t);
        new_max[t] = x > new_max[t] ? x : new_max[t];
      }
    for (index_t t = 0; t < kVecs; ++t) {
      alpha[t] = exp_approx(mx[t] - new_max[t]);  // 0 on the first block (mx = -inf)
      sum[t] = vecf{};
    }
    for (index_t r = 0; r < n; ++r)
      for (index_t t = 0; t < kVecs; ++t) {
        const vecf p = exp_approx(load(ST + r * kQueryBlock + kLanes * t) - new_max[t]);
        store(ST + r * kQueryBlock + kLanes * t, p);
        sum[t] += p;
      }
    for (index_t c = 0; c < d; ++c)
      for (index_t t = 0; t < kVecs; ++t)
        store(OT + c * kQueryBlock + kLanes * t, load(OT + c * kQueryBlock + kLanes * t) * alpha[t]);
    for (index_t t = 0; t < kVecs; ++t) {
      l[t] = l[t] * alpha[t] + sum[t];
      mx[t] = new_max[t];
    }
    gemm_acc(d, kQueryBlock, n, VT + j0, ld_vt, ST, kQueryBlock, OT, kQueryBlock);
  }
  for (index_t t = 0; t < kVecs; ++t) {
    const vecf inv = 1.0f / l[t];
    for (index_t c = 0; c < d; ++c)
      store(OT + c * kQueryBlock + kLanes * t, load(OT + c * kQueryBlock + kLanes * t) * inv);
    for (index_t j = 0; j < kLanes; ++j) lse[kLanes * t + j] = mx[t][j] + std::log(l[t][j]);
  }
}

// Gradients of attend_columns for one block of kQueryBlock query columns (flash-style, from the saved
// log-sum-exp). The block's queries come both ways: QT and dOT (d x kQueryBlock) and Q and dO
// (kQueryBlock x d rows), Q scaled; padding columns / rows are zero, with lse and D (kQueryBlock) zero
// there too, so they add nothing. K, V: Lk x d rows; KT: d x Lk. Accumulates dQT (d x kQueryBlock;
// the caller multiplies by the scale), dK and dV (Lk x d). In this layout P^T and dS^T are already
// the left operands of dV += P^T dO and dK += dS^T Q: no tile transposes.
inline void attend_columns_backward(const float* QT, const float* Q, const float* dOT, const float* dO,
                                    const float* lse, const float* D, const float* K, const float* V,
                                    const float* KT, index_t Lk, index_t d, AttentionScratch& w, float* dQT,
                                    float* dK, float* dV) {
  constexpr index_t kVecs = kQueryBlock / kLanes;
  vecf row_lse[kVecs], row_D[kVecs];
  for (index_t t = 0; t < kVecs; ++t) {
    row_lse[t] = load(lse + kLanes * t);
    row_D[t] = load(D + kLanes * t);
  }
  float* PT = w.S.data();    // n x kQueryBlock: logits, then probabilities
  float* dST = w.dP.data();  // n x kQueryBlock: dP^T = V dO^T, then dS^T
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
    const index_t n = std::min(kKeyBlock, Lk - j0);
    gemm_set(n, kQueryBlock, d, K + j0 * d, d, QT, kQueryBlock, PT, kQueryBlock);
    gemm_set(n, kQueryBlock, d, V + j0 * d, d, dOT, kQueryBlock, dST, kQueryBlock);
    for (index_t r = 0; r < n; ++r)
      for (index_t t = 0; t < kVecs; ++t) {
        const index_t x = r * kQueryBlock + kLanes * t;
        const vecf p = exp_approx(load(PT + x) - row_lse[t]);
        store(PT + x, p);
        store(dST + x, p * (load(dST + x) - row_D[t]));
      }
    gemm_acc(n, d, kQueryBlock, PT, kQueryBlock, dO, d, dV + j0 * d, d);
    gemm_acc(n, d, kQueryBlock, dST, kQueryBlock, Q, d, dK + j0 * d, d);
    gemm_acc(d, kQueryBlock, n, KT + j0, Lk, dST, kQueryBlock, dQT, kQueryBlock);
  }
}

// Gradients of one head's attention (flash-style, from the saved log-sum-exp): Q (Lq x d, already
// scaled), K (Lk x d) and KT, VT (d x Lk), dO (Lq x d), lse and D = rowsum(dO * O) (Lq). Accumulates
// into dQ (Lq x d; the caller multiplies by the scale), dK (Lk x d) and dV (Lk x d).
// on_dlogits(i0, m, j0, n, dS) may add to each block's logit gradient (row stride kKeyBlock).
template <typename OnDLogits>
void attend_backward(const float* Q, index_t Lq, const float* K, const float* KT, const float* VT,
                     index_t Lk, index_t d, const float* dO, const float* lse, const float* D,
                     AttentionScratch& w, float* dQ, float* dK, float* dV, OnDLogits on_dlogits) {
  for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
    const index_t m = std::min(kQueryBlock, Lq - i0);
    for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
      const index_t n = std::min(kKeyBlock, Lk - j0);
      scores(Q + i0 * d, m, KT, Lk, j0, n, d, w.S.data());
      scores(dO + i0 * d, m, VT, Lk, j0, n, d, w.dP.data());
      softmax_backward_block(w.S.data(), w.dP.data(), m, n, lse + i0, D + i0);
      on_dlogits(i0, m, j0, n, w.dP.data());
      // dQ += dS K;  dV += P^T dO;  dK += dS^T (scale q)
      gemm_acc(m, d, n, w.dP.data(), kKeyBlock, K + j0 * d, d, dQ + i0 * d, d);
      transpose(m, n, w.S.data(), kKeyBlock, w.T.data(), kQueryBlock);
      gemm_acc(n, d, m, w.T.data(), kQueryBlock, dO + i0 * d, d, dV + j0 * d, d);
      transpose(m, n, w.dP.data(), kKeyBlock, w.T.data(), kQueryBlock);
      gemm_acc(n, d, m, w.T.data(), kQueryBlock, Q + i0 * d, d, dK + j0 * d, d);
    }
  }
}

// D[i] = sum_c dO[i][c] * O[i][c] for L rows of d.
inline void row_dots(const float* dO, const float* O, index_t L, index_t d, float* D) {
  for (index_t i = 0; i < L; ++i) {
    float dot = 0.0f;
    for (index_t c = 0; c < d; ++c) dot += dO[i * d + c] * O[i * d + c];
    D[i] = dot;
  }
}

}  // namespace hrvit
