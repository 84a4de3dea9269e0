// Tile helpers shared by the attention kernels: gathering token rows into cache-resident tiles, and
// one head's attention forward and backward over key blocks of kKeyBlock keys.
//
// Queries are columns: S^T = K Q^T (keys x queries). A query's softmax statistics are then lanes of a
// vector (no per-row horizontal reductions), every product has kQueryBlock columns or a kQueryBlock
// inner dimension whatever the head dim (16, 24, 32 fill whole vectors), and in backward P^T and dS^T
// are directly the left operands of dV and dK. Measured 10-30% faster than queries as rows here.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hrvit/bf16_dot.h"
#include "hrvit/fast_math.h"
#include "hrvit/gemm.h"
#include "hrvit/token_tensor.h"

namespace hrvit {

constexpr index_t kKeyBlock = 128;
constexpr index_t kQueryBlock = 32;

// dst[i][c] = t[batch][tokens[i]][c0 + c] for the tokens' rows and c < d (fp32 or bf16 t).
inline void gather(TokenTensor t, index_t batch, const std::vector<index_t>& tokens, index_t c0, index_t d,
                   float* dst) {
  const index_t L = static_cast<index_t>(tokens.size());
  for (index_t i = 0; i < L; ++i) {
    const index_t offset = batch * t.sb + tokens[i] * t.sn + c0;
    if (t.data16)
      load_row(t.data16 + offset, d, dst + i * d);
    else
      copy_row(t.data + offset, d, dst + i * d);
  }
}

// dst[c][i] = scale * t[batch][tokens[i]][c0 + c] for c < d and i < n, row stride ld_dst; columns
// [n, width) are zero (a query block's padding). A bf16 t's rows go through fp32 rows first.
inline void gather_columns(TokenTensor t, index_t batch, const index_t* tokens, index_t n, index_t width,
                           index_t c0, index_t d, float scale, float* dst, index_t ld_dst) {
  thread_local std::vector<float> converted;
  if (t.data16) converted.resize(kLanes * d);
  const float* rows[kLanes];
  for (index_t i0 = 0; i0 < width; i0 += kLanes) {
    const index_t group = std::min(kLanes, width - i0);
    for (index_t i = 0; i < group; ++i) {
      rows[i] = nullptr;
      if (i0 + i >= n) continue;
      const index_t offset = batch * t.sb + tokens[i0 + i] * t.sn + c0;
      if (t.data16) {
        load_row(t.data16 + offset, d, converted.data() + i * d);
        rows[i] = converted.data() + i * d;
      } else {
        rows[i] = t.data + offset;
      }
    }
    rows_to_columns(rows, group, d, scale, dst + i0, ld_dst);
  }
}

// Scratch of one thread for attend_key_block and attend_key_block_backward: one key block x query
// block tile each.
struct AttentionScratch {
  std::vector<float> S = std::vector<float>(kKeyBlock * kQueryBlock);
  std::vector<float> dP = std::vector<float>(kKeyBlock * kQueryBlock);
};

// out[i][:] *= f[i] for the kQueryBlock queries of an attend_key_block output: O^T (d x kQueryBlock)
// or, with ValueRows, O (kQueryBlock x d).
template <bool ValueRows>
inline void scale_queries(float* O, index_t d, const vecf* f) {
  constexpr index_t kVecs = kQueryBlock / kLanes;
  if constexpr (ValueRows) {
    for (index_t i = 0; i < kQueryBlock; ++i) {
      const float fi = f[i / kLanes][i % kLanes];
      for (index_t c = 0; c < d; ++c) O[i * d + c] *= fi;
    }
  } else {
    for (index_t c = 0; c < d; ++c)
      for (index_t t = 0; t < kVecs; ++t)
        store(O + c * kQueryBlock + kLanes * t, load(O + c * kQueryBlock + kLanes * t) * f[t]);
  }
}

// Running softmax statistics of a block of kQueryBlock queries, in base 2: the largest logit seen so
// far and the sum of 2^(logit - max) over the keys seen.
struct QueryBlockStats {
  static constexpr index_t kVecs = kQueryBlock / kLanes;
  static_assert(kQueryBlock % kLanes == 0, "a query block is whole vectors");
  vecf max[kVecs], sum[kVecs];
  void reset() {
    for (index_t t = 0; t < kVecs; ++t) {
      max[t] = vecf{} - std::numeric_limits<float>::infinity();
      sum[t] = vecf{};
    }
  }
};

// The online-softmax step of one key block: the block's base-2 logits S^T (n x kQueryBlock) become
// 2^(logit - new max) in place, the stats move to the new maxima and sums, and alpha[t] is the factor that
// rescales what the earlier blocks accumulated. With Sum set, the logits are also written to (kSet) or
// added to (kAdd) logit_sum by the pass that finds their maxima.
enum class LogitSum { kNone, kSet, kAdd };
template <LogitSum Sum = LogitSum::kNone>
inline void online_softmax_step(float* ST, index_t n, QueryBlockStats& stats, vecf* alpha,
                                float* logit_sum = nullptr) {
  constexpr index_t kVecs = QueryBlockStats::kVecs;
  vecf new_max[kVecs], sum[kVecs];
  for (index_t t = 0; t < kVecs; ++t) new_max[t] = stats.max[t];
  for (index_t r = 0; r < n; ++r)
    for (index_t t = 0; t < kVecs; ++t) {
      const index_t at = r * kQueryBlock + kLanes * t;
      const vecf x = load(ST + at);
      new_max[t] = x > new_max[t] ? x : new_max[t];
      if constexpr (Sum == LogitSum::kSet) store(logit_sum + at, x);
      if constexpr (Sum == LogitSum::kAdd) store(logit_sum + at, load(logit_sum + at) + x);
    }
  for (index_t t = 0; t < kVecs; ++t) {
    alpha[t] = exp2_approx(stats.max[t] - new_max[t]);  // ~0 on the first block (max = -inf)
    sum[t] = vecf{};
  }
  for (index_t r = 0; r < n; ++r)
    for (index_t t = 0; t < kVecs; ++t) {
      const vecf p = exp2_approx(load(ST + r * kQueryBlock + kLanes * t) - new_max[t]);
      store(ST + r * kQueryBlock + kLanes * t, p);
      sum[t] += p;
    }
  for (index_t t = 0; t < kVecs; ++t) {
    stats.sum[t] = stats.sum[t] * alpha[t] + sum[t];
    stats.max[t] = new_max[t];
  }
}

// One key block of one head's attention for a block of kQueryBlock queries (an online-softmax step).
// QT: d x kQueryBlock, scaled by the softmax scale times log2 e, so that the logits are in base 2
// (see exp2_approx; columns past the real queries may hold anything finite), K: n x d
// (row stride ld_k), n <= kKeyBlock. Values V^T: d x n (row stride ld_v), output O^T: d x kQueryBlock;
// or with ValueRows, V: n x d (row stride ld_v) and O: kQueryBlock x d, which reads V straight from
// a token tensor (no transpose) at the same tile shapes when d is whole vectors. The first key block
// (first = true, stats reset) sets O, later ones rescale it and add to it; O stays unnormalised until
// finish_query_block. With Sum set, the block's base-2 logits S^T (n x kQueryBlock) are also written
// to (kSet) or added to (kAdd) logit_sum, by the pass that finds their maxima.
// add_bias(ST, n), when given, adds a position bias (in base 2) to the block's logits S^T before anything
// else reads them.
struct NoBias {
  void operator()(float*, index_t) const {}
};
template <bool ValueRows, LogitSum Sum = LogitSum::kNone, typename AddBias = NoBias>
void attend_key_block(const float* QT, const float* K, index_t ld_k, const float* V, index_t ld_v, index_t n,
                      index_t d, bool first, QueryBlockStats& stats, float* scratch, float* O,
                      float* logit_sum = nullptr, const AddBias& add_bias = AddBias{}) {
  float* ST = scratch;  // n x kQueryBlock
  gemm_set(n, kQueryBlock, d, K, ld_k, QT, kQueryBlock, ST, kQueryBlock);
  add_bias(ST, n);
  vecf alpha[QueryBlockStats::kVecs];
  online_softmax_step<Sum>(ST, n, stats, alpha, logit_sum);
  if (!first) scale_queries<ValueRows>(O, d, alpha);
  if constexpr (ValueRows) {
    if (first)
      gemm_set_at<kQueryBlock>(d, n, ST, kQueryBlock, V, ld_v, O, d);
    else
      gemm_acc_at<kQueryBlock>(d, n, ST, kQueryBlock, V, ld_v, O, d);
  } else if (first) {
    gemm_set(d, kQueryBlock, n, V, ld_v, ST, kQueryBlock, O, kQueryBlock);
  } else {
    gemm_acc(d, kQueryBlock, n, V, ld_v, ST, kQueryBlock, O, kQueryBlock);
  }
}

// Normalises the O of attend_key_block and writes each query's log-sum-exp in base 2 (kQueryBlock):
// log2 of the sum of 2^logit over the keys, for the base-2 logits.
template <bool ValueRows>
void finish_query_block(const QueryBlockStats& stats, index_t d, float* O, float* lse) {
  vecf inv[QueryBlockStats::kVecs];
  for (index_t t = 0; t < QueryBlockStats::kVecs; ++t) {
    inv[t] = 1.0f / stats.sum[t];
    for (index_t j = 0; j < kLanes; ++j) lse[kLanes * t + j] = stats.max[t][j] + std::log2(stats.sum[t][j]);
  }
  scale_queries<ValueRows>(O, d, inv);
}

// One head's attention for a block of kQueryBlock queries against all Lk keys, one key block at a
// time (see attend_key_block; QT in base 2, V^T d x Lk). Writes the normalised O and lse.
// add_bias(ST, j0, n), when given, adds the base-2 position bias of keys [j0, j0 + n) to S^T.
struct NoBlockBias {
  void operator()(float*, index_t, index_t) const {}
};
template <bool ValueRows = false, typename AddBias = NoBlockBias>
void attend_columns(const float* QT, const float* K, index_t ld_k, const float* V, index_t ld_v,
                    index_t Lk, index_t d, AttentionScratch& w, float* O, float* lse,
                    const AddBias& add_bias = AddBias{}) {
  QueryBlockStats stats;
  stats.reset();
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock)
    attend_key_block<ValueRows>(QT, K + j0 * ld_k, ld_k, V + (ValueRows ? j0 * ld_v : j0), ld_v,
                                std::min(kKeyBlock, Lk - j0), d, j0 == 0, stats, w.S.data(), O, nullptr,
                                [&](float* ST, index_t n) { add_bias(ST, j0, n); });
  finish_query_block<ValueRows>(stats, d, O, lse);
}

#ifdef HRVIT_BF16_DOT
// attend_columns with bf16 matrix products (see bf16_dot.h): QTp, the block's unscaled queries as d / 2 pair
// rows; K: Lk x d bf16 (row stride ld_k); VTp: V^T in pairs of keys, d rows of Lk rounded up to even bf16
// (row stride ld_vt, a zero key at the end of an odd Lk); logit_scale turns q.k into base-2 logits. The
// probabilities are rounded to bf16 for the product with V, as a bf16 reference rounds them; logits,
// softmax statistics and output accumulate in fp32. Writes the normalised O^T (d x kQueryBlock) and lse.
HRVIT_BF16_TARGET inline void attend_columns_bf16(const bf16_t* QTp, const bf16_t* K, index_t ld_k,
                                                  const bf16_t* VTp, index_t ld_vt, index_t Lk, index_t d,
                                                  float logit_scale, AttentionScratch& w, bf16_t* PTp, float* OT,
                                                  float* lse) {
  static_assert(kQueryBlock == kPairColumns, "a query block is one pair row's columns");
  QueryBlockStats stats;
  stats.reset();
  float* ST = w.S.data();
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
    const index_t n = std::min(kKeyBlock, Lk - j0);
    dot_pairs(n, d / 2, K + j0 * ld_k, ld_k, QTp, logit_scale, false, ST);
    vecf alpha[QueryBlockStats::kVecs];
    online_softmax_step(ST, n, stats, alpha);
    to_pair_rows(ST, n, PTp);
    if (j0 > 0) scale_queries<false>(OT, d, alpha);
    dot_pairs(d, (n + 1) / 2, VTp + j0, ld_vt, PTp, 1.0f, j0 > 0, OT);
  }
  finish_query_block<false>(stats, d, OT, lse);
}
#endif

// Gradients of attend_key_block for one block of kQueryBlock query columns and one block of n <=
// kKeyBlock keys (flash-style, from the saved base-2 log-sum-exp of finish_query_block). The queries come
// both ways: QT and dOT (d x kQueryBlock) and Q and dO (kQueryBlock x d rows), Q scaled, and QT scaled
// times log2 e exactly as the forward built it (the same rounding, so that the logits agree with the
// saved lse bit for bit: with logits in the hundreds, an lse converted between bases loses enough to make
// the gradients several times less accurate than the reference's); padding columns / rows are zero, with
// lse and D (kQueryBlock) zero there too, so they add nothing. K, V: n x d rows (row strides ld_k, ld_v).
// Accumulates dQT (d x kQueryBlock; the caller multiplies by the scale), dK and dV (n x d). In this
// layout P^T and dS^T are already the left operands of dV += P^T dO and dK += dS^T Q, and K is the
// transposed left operand of dQ^T += K^T dS^T: no transposes. add_bias(PT, n) adds the forward's position
// bias to the logits; on_dlogits(dST) may read the logit gradient dS^T (n x kQueryBlock, natural units) or
// add to it before it is used.
template <typename AddBias, typename OnDLogits>
void attend_key_block_backward(const float* QT, const float* Q, const float* dOT, const float* dO,
                               const float* lse, const float* D, const float* K, index_t ld_k, const float* V,
                               index_t ld_v, index_t n, index_t d, AttentionScratch& w, float* dQT, float* dK,
                               float* dV, const AddBias& add_bias, OnDLogits on_dlogits) {
  constexpr index_t kVecs = kQueryBlock / kLanes;
  vecf row_lse[kVecs], row_D[kVecs];
  for (index_t t = 0; t < kVecs; ++t) {
    row_lse[t] = load(lse + kLanes * t);
    row_D[t] = load(D + kLanes * t);
  }
  float* PT = w.S.data();    // n x kQueryBlock: logits, then probabilities
  float* dST = w.dP.data();  // n x kQueryBlock: dP^T = V dO^T, then dS^T
  gemm_set(n, kQueryBlock, d, K, ld_k, QT, kQueryBlock, PT, kQueryBlock);
  add_bias(PT, n);
  gemm_set(n, kQueryBlock, d, V, ld_v, dOT, kQueryBlock, dST, kQueryBlock);
  for (index_t r = 0; r < n; ++r)
    for (index_t t = 0; t < kVecs; ++t) {
      const index_t x = r * kQueryBlock + kLanes * t;
      const vecf p = exp2_approx(load(PT + x) - row_lse[t]);
      store(PT + x, p);
      store(dST + x, p * (load(dST + x) - row_D[t]));
    }
  on_dlogits(dST);
  gemm_acc(n, d, kQueryBlock, PT, kQueryBlock, dO, d, dV, d);
  gemm_acc(n, d, kQueryBlock, dST, kQueryBlock, Q, d, dK, d);
  gemm_acc_at(d, kQueryBlock, n, K, ld_k, dST, kQueryBlock, dQT, kQueryBlock);  // dQ^T += K^T dS^T
}

// The same against all Lk keys (K, V, dK, dV: Lk x d rows), one key block at a time. add_bias(PT, j0, n)
// adds the base-2 position bias of keys [j0, j0 + n); on_dlogits(dST, j0, n) reads their logit gradient.
struct NoBlockDLogits {
  void operator()(const float*, index_t, index_t) const {}
};
template <typename AddBias = NoBlockBias, typename OnDLogits = NoBlockDLogits>
void attend_columns_backward(const float* QT, const float* Q, const float* dOT, const float* dO, const float* lse,
                             const float* D, const float* K, const float* V, index_t Lk, index_t d,
                             AttentionScratch& w, float* dQT, float* dK, float* dV,
                             const AddBias& add_bias = AddBias{}, const OnDLogits& on_dlogits = OnDLogits{}) {
  for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock)
    attend_key_block_backward(QT, Q, dOT, dO, lse, D, K + j0 * d, d, V + j0 * d, d, std::min(kKeyBlock, Lk - j0),
                              d, w, dQT, dK + j0 * d, dV + j0 * d,
                              [&](float* PT, index_t n) { add_bias(PT, j0, n); },
                              [&](float* dST) { on_dlogits(dST, j0, std::min(kKeyBlock, Lk - j0)); });
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
