// Attention-to-mask (SegViT's ATM), forward and backward, fp32; the forward also on bf16 inputs with bf16
// products where the CPU has AVX-512-BF16.
//
// Forward units are (batch, group of heads): each sums its heads' logits into the batch element's
// mask, or into a partial sum added at the end when a batch element's heads are split among threads.
// Backward units are (batch, head), which own that head's channels of dq, dk and dv. Neither needs
// synchronisation, and the per-head logits are never stored.
#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "hrvit/kernels/attention_to_mask.h"

#include "hrvit/attention_tiles.h"
#include "hrvit/fast_math.h"
#include "hrvit/scratch.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

std::vector<index_t> iota(index_t n) {
  std::vector<index_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), index_t{0});
  return v;
}

// Head groups per batch element: the fewest that share the (batch, head group) units out evenly
// among the threads (batch 1 on 2 threads: 2 groups).
index_t head_groups(index_t batch, index_t heads, int threads) {
  const double even_share = static_cast<double>(batch) / threads;
  for (index_t g = 1; g < heads; ++g) {
    const double busiest = static_cast<double>((batch * g + threads - 1) / threads) / static_cast<double>(g);
    if (heads % g == 0 && busiest <= 1.05 * even_share) return g;
  }
  return heads;
}

// mask[row] += partial sums of head groups 1.. (see the forward passes), rows of Lk.
void add_partial_masks(const MaskAttentionShape& s, index_t groups, const float* partial, float* mask) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
  for (index_t row = 0; row < s.batch * s.queries; ++row) {
    float* __restrict__ dst = mask + row * s.keys;
    for (index_t g = 1; g < groups; ++g) {
      const float* __restrict__ src = partial + ((g - 1) * s.batch * s.queries + row) * s.keys;
      for (index_t j = 0; j < s.keys; ++j) dst[j] += src[j];
    }
  }
}

#ifdef HRVIT_BF16_DOT
// The forward pass on bf16 q, k, v with bf16 matrix products (attend_columns_bf16's steps, plus the sum of the
// logits over heads). Units are (batch, head group, query block); each runs its group's heads over all keys,
// keys read in place as bf16 rows, V^T in pairs of keys built once per batch element and shared. A unit sums
// its heads' base-2 logits (Lk x kQueryBlock) and writes them into mask, or into the partial sum of its head
// group, as the fp32 pass does.
HRVIT_BF16_TARGET void forward_bf16_dot(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                        bf16_t* out, float* mask, float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t blocks = (Lq + kQueryBlock - 1) / kQueryBlock, ld_vt = (Lk + 1) / 2 * 2;
  const int threads = num_threads > 0 ? num_threads : 1;
  const index_t groups = head_groups(s.batch * blocks, s.heads, threads), group_heads = s.heads / groups;
  const float mask_scale = kLn2 / static_cast<float>(s.heads);
  thread_local std::vector<float> partial_sums;
  float* partial = kept(partial_sums, (groups - 1) * s.batch * Lq * Lk);
  std::vector<bf16_t> VT(static_cast<size_t>(C * ld_vt));  // one batch element's V^T, C rows of keys
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    AttentionScratch w;
    std::vector<bf16_t> QTp(d * kQueryBlock), PTp((kKeyBlock + 1) / 2 * 2 * kQueryBlock);
    std::vector<float> OT(d * kQueryBlock), block_lse(kQueryBlock), logit_sum(Lk * kQueryBlock);
    for (index_t b = 0; b < s.batch; ++b) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (index_t c = 0; c < C; ++c) {
        bf16_t* row = VT.data() + c * ld_vt;
        for (index_t j = 0; j < Lk; ++j) row[j] = v.data16[b * v.sb + j * v.sn + c];
        if (ld_vt > Lk) row[Lk] = 0;  // the zero key of an odd count's last pair
      }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (index_t unit = 0; unit < groups * blocks; ++unit) {
        const index_t g = unit / blocks, i0 = unit % blocks * kQueryBlock, m = std::min(kQueryBlock, Lq - i0);
        float* unit_mask = (g == 0 ? mask : partial + (g - 1) * s.batch * Lq * Lk) + (b * Lq + i0) * Lk;
        for (index_t h = 0; h < group_heads; ++h) {
          const index_t head = g * group_heads + h, c0 = head * d;
          std::fill(QTp.begin(), QTp.end(), bf16_t{0});  // padding queries: zero logits, nothing stored
          for (index_t i = 0; i < m; ++i) {
            const bf16_t* q_row = q.data16 + b * q.sb + (i0 + i) * q.sn + c0;
            for (index_t c = 0; c < d; ++c) QTp[c / 2 * 2 * kQueryBlock + 2 * i + c % 2] = q_row[c];
          }
          QueryBlockStats stats;
          stats.reset();
          for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
            const index_t n = std::min(kKeyBlock, Lk - j0);
            float* ST = w.S.data();
            dot_pairs(n, d / 2, k.data16 + b * k.sb + j0 * k.sn + c0, k.sn, QTp.data(), s.scale * kLog2e, false, ST);
            vecf alpha[QueryBlockStats::kVecs];
            if (h == 0)
              online_softmax_step<LogitSum::kSet>(ST, n, stats, alpha, logit_sum.data() + j0 * kQueryBlock);
            else
              online_softmax_step<LogitSum::kAdd>(ST, n, stats, alpha, logit_sum.data() + j0 * kQueryBlock);
            to_pair_rows(ST, n, PTp.data());
            if (j0 > 0) scale_queries<false>(OT.data(), d, alpha);
            dot_pairs(d, (n + 1) / 2, VT.data() + c0 * ld_vt + j0, ld_vt, PTp.data(), 1.0f, j0 > 0, OT.data());
          }
          finish_query_block<false>(stats, d, OT.data(), block_lse.data());
          for (index_t i = 0; i < m; ++i) {
            bf16_t* dst = out + (b * Lq + i0 + i) * C + c0;
            for (index_t c = 0; c < d; ++c) dst[c] = to_bf16(OT[c * kQueryBlock + i]);
            lse[(b * s.heads + head) * Lq + i0 + i] = block_lse[i];
          }
        }
        transpose(Lk, m, logit_sum.data(), kQueryBlock, unit_mask, Lk, mask_scale);
      }
    }
    if (groups > 1) add_partial_masks(s, groups, partial, mask);
  }
}
#endif

void forward_fp32(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v, float* out,
                  float* mask, float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t blocks = (Lq + kQueryBlock - 1) / kQueryBlock;
  const int threads = num_threads > 0 ? num_threads : 1;
  const index_t groups = head_groups(s.batch, s.heads, threads), group_heads = s.heads / groups;
  const index_t tiles = group_heads * blocks;  // (head, query block) pairs of a unit, head-major
  // The mask is the mean of the heads' natural logits; the softmax works with base-2 ones.
  const float mask_scale = kLn2 / static_cast<float>(s.heads);
  const std::vector<index_t> queries = iota(Lq);
  // Head group 0 writes its share of the mean logits into mask, group g > 0 into partial (B, Lq, Lk)
  // number g - 1; those are added once all units are done.
  thread_local std::vector<float> partial_sums;
  float* partial = kept(partial_sums, (groups - 1) * s.batch * Lq * Lk);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    AttentionScratch w;
    // Key blocks outer, then query blocks, then heads: a key block's rows of k and v (the group's
    // channels, read in place at their row stride) stay in L2 while every (head, query block) tile
    // uses them, and the head sum of a (key block, query block) tile of logits stays in L1. Each tile
    // keeps its Q^T, its unnormalised O and its softmax statistics across the key blocks.
    thread_local std::vector<float> q_cols, outputs;
    float* QT = kept(q_cols, tiles * d * kQueryBlock);  // per tile: d x kQueryBlock
    float* O = kept(outputs, tiles * kQueryBlock * d);  // per tile: kQueryBlock x d
    std::vector<QueryBlockStats> stats(static_cast<size_t>(tiles));
    std::vector<float> mask_sum(kKeyBlock * kQueryBlock), block_lse(kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * groups; ++unit) {
      const index_t b = unit / groups, g = unit % groups, c0 = g * group_heads * d;
      float* unit_mask = (g == 0 ? mask : partial + (g - 1) * s.batch * Lq * Lk) + b * Lq * Lk;
      for (index_t h = 0; h < group_heads; ++h)
        for (index_t blk = 0; blk < blocks; ++blk) {
          const index_t i0 = blk * kQueryBlock, m = std::min(kQueryBlock, Lq - i0);
          gather_columns(q, b, queries.data() + i0, m, kQueryBlock, c0 + h * d, d, s.scale * kLog2e,
                         QT + (h * blocks + blk) * d * kQueryBlock, kQueryBlock);
          stats[h * blocks + blk].reset();
        }
      for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
        const index_t n = std::min(kKeyBlock, Lk - j0);
        const float* k_block = k.data + b * k.sb + j0 * k.sn + c0;
        const float* v_block = v.data + b * v.sb + j0 * v.sn + c0;
        for (index_t blk = 0; blk < blocks; ++blk) {
          const index_t i0 = blk * kQueryBlock;
          for (index_t h = 0; h < group_heads; ++h) {
            const index_t tile = h * blocks + blk;
            const float *tile_q = QT + tile * d * kQueryBlock, *k_head = k_block + h * d, *v_head = v_block + h * d;
            float* tile_out = O + tile * kQueryBlock * d;
            if (h == 0)
              attend_key_block<true, LogitSum::kSet>(tile_q, k_head, k.sn, v_head, v.sn, n, d, j0 == 0, stats[tile],
                                                     w.S.data(), tile_out, mask_sum.data());
            else
              attend_key_block<true, LogitSum::kAdd>(tile_q, k_head, k.sn, v_head, v.sn, n, d, j0 == 0, stats[tile],
                                                     w.S.data(), tile_out, mask_sum.data());
          }
          transpose(n, std::min(kQueryBlock, Lq - i0), mask_sum.data(), kQueryBlock, unit_mask + i0 * Lk + j0,
                    Lk, mask_scale);
        }
      }
      for (index_t h = 0; h < group_heads; ++h)
        for (index_t blk = 0; blk < blocks; ++blk) {
          const index_t tile = h * blocks + blk, i0 = blk * kQueryBlock, head = g * group_heads + h;
          float* tile_out = O + tile * kQueryBlock * d;
          finish_query_block<true>(stats[tile], d, tile_out, block_lse.data());
          for (index_t i = 0; i < std::min(kQueryBlock, Lq - i0); ++i) {
            copy_row(tile_out + i * d, d, out + (b * Lq + i0 + i) * C + c0 + h * d);
            lse[(b * s.heads + head) * Lq + i0 + i] = block_lse[i];
          }
        }
    }
    if (groups > 1) add_partial_masks(s, groups, partial, mask);
  }
}

}  // namespace

void attention_to_mask_forward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                               void* out, bool bf16_dots, float* mask, float* lse, int num_threads) {
  if (q.data16 || k.data16 || v.data16) {
#ifdef HRVIT_BF16_DOT
    if (bf16_dots && q.data16 && k.data16 && v.data16 && (s.channels / s.heads) % 2 == 0 && cpu_has_bf16_dot())
      return forward_bf16_dot(s, q, k, v, static_cast<bf16_t*>(out), mask, lse, num_threads);
#endif
    (void)bf16_dots;
    throw std::invalid_argument("attention_to_mask_forward: bf16 inputs need bf16 products: q, k and v bf16, an "
                                "even head dim and a CPU with AVX-512-BF16");
  }
  forward_fp32(s, q, k, v, static_cast<float*>(out), mask, lse, num_threads);
}

void attention_to_mask_backward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                TokenTensor out, const float* lse, TokenTensor grad_out,
                                const float* grad_mask, float* grad_q, float* grad_k, float* grad_v,
                                int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t padded = (Lq + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  const std::vector<index_t> queries = iota(Lq);
  const float inv_heads = 1.0f / static_cast<float>(s.heads);
  // The mask is the mean of the heads' logits, so each head's logits get grad_mask / heads; stored
  // transposed (B, Lk, padded queries, zero past Lq) to match the keys x queries blocks.
  thread_local std::vector<float> grad_mask_cols;
  float* grad_maskT = grad_mask ? kept(grad_mask_cols, s.batch * Lk * padded) : nullptr;
  if (grad_mask) {
    constexpr index_t kKeysPerTask = 64;
    const index_t tasks = (Lk + kKeysPerTask - 1) / kKeysPerTask;
    parallel_for(s.batch * tasks, num_threads, [&](index_t task) {
      const index_t b = task / tasks, j0 = task % tasks * kKeysPerTask, n = std::min(kKeysPerTask, Lk - j0);
      float* dst = grad_maskT + (b * Lk + j0) * padded;
      transpose(Lq, n, grad_mask + b * Lq * Lk + j0, Lk, dst, padded);
      for (index_t j = 0; j < n; ++j) std::fill(dst + j * padded + Lq, dst + (j + 1) * padded, 0.0f);
    });
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    // Key blocks outer, query blocks inner: a key block's rows of k and v (read in place at their row
    // stride) and its dK and dV (kKeyBlock x d) stay in cache while every query block passes over them;
    // the query side of the unit's head (rows padded with zero rows to whole blocks, see
    // attend_key_block_backward) stays in L2.
    std::vector<float> Q(padded * d), O(padded * d), dO(padded * d), D(padded), row_lse(padded);
    std::vector<float> QT(padded * d), dOT(padded * d), dQT(padded * d), dQ(kQueryBlock * d);
    std::vector<float> dK(kKeyBlock * d), dV(kKeyBlock * d);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * s.heads; ++unit) {
      const index_t b = unit / s.heads, h = unit % s.heads, c0 = h * d;
      for (auto* buf : {&Q, &O, &dO, &D, &row_lse, &dQT}) std::fill(buf->begin(), buf->end(), 0.0f);
      gather(q, b, queries, c0, d, Q.data());
      for (float& x : Q) x *= s.scale;
      gather(out, b, queries, c0, d, O.data());
      gather(grad_out, b, queries, c0, d, dO.data());
      row_dots(dO.data(), O.data(), Lq, d, D.data());
      std::copy(lse + (b * s.heads + h) * Lq, lse + (b * s.heads + h + 1) * Lq, row_lse.begin());
      // Per query block: Q^T as the forward built it (base-2 logits, the same rounding) and dO^T.
      for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
        gather_columns(q, b, queries.data() + i0, std::min(kQueryBlock, Lq - i0), kQueryBlock, c0, d,
                       s.scale * kLog2e, QT.data() + i0 * d, kQueryBlock);
        transpose(kQueryBlock, d, dO.data() + i0 * d, d, dOT.data() + i0 * d, kQueryBlock);
      }
      for (index_t j0 = 0; j0 < Lk; j0 += kKeyBlock) {
        const index_t n = std::min(kKeyBlock, Lk - j0);
        const float *k_block = k.data + b * k.sb + j0 * k.sn + c0, *v_block = v.data + b * v.sb + j0 * v.sn + c0;
        std::fill(dK.begin(), dK.end(), 0.0f);
        std::fill(dV.begin(), dV.end(), 0.0f);
        for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
          auto add_mask_grad = [&](float* __restrict__ dST) {
            if (!grad_mask) return;
            for (index_t r = 0; r < n; ++r) {
              const float* __restrict__ g = grad_maskT + (b * Lk + j0 + r) * padded + i0;
              for (index_t x = 0; x < kQueryBlock; ++x) dST[r * kQueryBlock + x] += g[x] * inv_heads;
            }
          };
          attend_key_block_backward(QT.data() + i0 * d, Q.data() + i0 * d, dOT.data() + i0 * d,
                                    dO.data() + i0 * d, row_lse.data() + i0, D.data() + i0, k_block, k.sn,
                                    v_block, v.sn, n, d, w, dQT.data() + i0 * d, dK.data(), dV.data(),
                                    NoBias{}, add_mask_grad);
        }
        for (index_t r = 0; r < n; ++r) {
          write_row(dK.data() + r * d, d, grad_k + (b * Lk + j0 + r) * C + c0);
          write_row(dV.data() + r * d, d, grad_v + (b * Lk + j0 + r) * C + c0);
        }
      }
      for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
        transpose(d, kQueryBlock, dQT.data() + i0 * d, kQueryBlock, dQ.data(), d, s.scale);
        for (index_t i = 0; i < std::min(kQueryBlock, Lq - i0); ++i)
          write_row(dQ.data() + i * d, d, grad_q + (b * Lq + i0 + i) * C + c0);
      }
    }
    stores_done();
  }
}

}  // namespace hrvit
