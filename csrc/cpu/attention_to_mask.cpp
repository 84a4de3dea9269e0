// Attention-to-mask (SegViT's ATM), forward and backward, fp32.
//
// Forward units are (batch, group of heads): each sums its heads' logits into the batch element's
// mask, or into a partial sum added at the end when a batch element's heads are split among threads.
// Backward units are (batch, head), which own that head's channels of dq, dk and dv. Neither needs
// synchronisation, and the per-head logits are never stored.
#include <algorithm>
#include <numeric>
#include <vector>

#include "hrvit/attention_tiles.h"
#include "hrvit/kernels.h"

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

}  // namespace

void attention_to_mask_forward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                               float* out, float* mask, float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t blocks = (Lq + kQueryBlock - 1) / kQueryBlock;
  const int threads = num_threads > 0 ? num_threads : 1;
  const index_t groups = head_groups(s.batch, s.heads, threads), group_heads = s.heads / groups;
  const float inv_heads = 1.0f / static_cast<float>(s.heads);
  const std::vector<index_t> queries = iota(Lq), keys = iota(Lk);
  // Head group 0 writes its share of the mean logits into mask, group g > 0 into partial (B, Lq, Lk)
  // number g - 1; those are added once all units are done.
  thread_local std::vector<float> partial_sums;
  float* partial = kept(partial_sums, (groups - 1) * s.batch * Lq * Lk);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    AttentionScratch w;
    // The head's keys and values packed (Lk x d): at their row stride of C in the token tensors, a
    // head's rows fall into few cache sets and would not stay in L2 across the query blocks.
    // maskT: the unit's logits summed over its heads, keys x queries per query block, as
    // attend_columns produces them.
    thread_local std::vector<float> k_rows, v_rows, mask_cols;
    float* K = kept(k_rows, Lk * d);
    float* V = kept(v_rows, Lk * d);
    float* maskT = kept(mask_cols, blocks * Lk * kQueryBlock);
    std::vector<float> QT(d * kQueryBlock), O(kQueryBlock * d), block_lse(kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * groups; ++unit) {
      const index_t b = unit / groups, g = unit % groups, h0 = g * group_heads;
      // Heads outer, query blocks inner: each head's K and V are packed once and stay in L2.
      for (index_t h = h0; h < h0 + group_heads; ++h) {
        gather(k, b, keys, h * d, d, K);
        gather(v, b, keys, h * d, d, V);
        for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
          const index_t m = std::min(kQueryBlock, Lq - i0);
          // Q^T of the block and head, scaled.
          gather_columns(q, b, queries.data() + i0, m, kQueryBlock, h * d, d, s.scale, QT.data(),
                         kQueryBlock);
          auto add_to_mask = [&](index_t j0, index_t n, const float* ST) {
            float* __restrict__ dst = maskT + (i0 * Lk + j0 * kQueryBlock);
            if (h == h0)
              for (index_t x = 0; x < n * kQueryBlock; ++x) dst[x] = ST[x] * inv_heads;
            else
              for (index_t x = 0; x < n * kQueryBlock; ++x) dst[x] += ST[x] * inv_heads;
          };
          attend_columns<true>(QT.data(), K, d, V, d, Lk, d, w, O.data(), block_lse.data(), add_to_mask);
          for (index_t i = 0; i < m; ++i) {
            copy_row(O.data() + i * d, d, out + (b * Lq + i0 + i) * C + h * d);
            lse[(b * s.heads + h) * Lq + i0 + i] = block_lse[i];
          }
        }
      }
      float* dst = (g == 0 ? mask : partial + (g - 1) * s.batch * Lq * Lk) + b * Lq * Lk;
      for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock)
        transpose(Lk, std::min(kQueryBlock, Lq - i0), maskT + i0 * Lk, kQueryBlock, dst + i0 * Lk, Lk);
    }
    if (groups > 1) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (index_t row = 0; row < s.batch * Lq; ++row) {
        float* __restrict__ dst = mask + row * Lk;
        for (index_t g = 1; g < groups; ++g) {
          const float* __restrict__ src = partial + ((g - 1) * s.batch * Lq + row) * Lk;
          for (index_t j = 0; j < Lk; ++j) dst[j] += src[j];
        }
      }
    }
  }
}

void attention_to_mask_backward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                TokenTensor out, const float* lse, TokenTensor grad_out,
                                const float* grad_mask, float* grad_q, float* grad_k, float* grad_v,
                                int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t padded = (Lq + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  const std::vector<index_t> queries = iota(Lq), keys = iota(Lk);
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
    // Query-side rows padded with zero rows to whole blocks (see attend_columns_backward).
    std::vector<float> Q(padded * d), O(padded * d), dO(padded * d), D(padded), row_lse(padded);
    std::vector<float> QT(d * kQueryBlock), dOT(d * kQueryBlock), dQT(d * kQueryBlock), dQ(kQueryBlock * d);
    // Key-side rows of the unit's head, kept between calls (their size is that of the inputs).
    thread_local std::vector<float> k_rows, v_rows, dk_rows, dv_rows;
    float* K = kept(k_rows, Lk * d);
    float* V = kept(v_rows, Lk * d);
    float* dK = kept(dk_rows, Lk * d);
    float* dV = kept(dv_rows, Lk * d);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * s.heads; ++unit) {
      const index_t b = unit / s.heads, h = unit % s.heads, c0 = h * d;
      for (auto* buf : {&Q, &O, &dO, &D, &row_lse}) std::fill(buf->begin(), buf->end(), 0.0f);
      gather(q, b, queries, c0, d, Q.data());
      for (float& x : Q) x *= s.scale;
      gather(k, b, keys, c0, d, K);
      gather(v, b, keys, c0, d, V);
      gather(out, b, queries, c0, d, O.data());
      gather(grad_out, b, queries, c0, d, dO.data());
      row_dots(dO.data(), O.data(), Lq, d, D.data());
      std::copy(lse + (b * s.heads + h) * Lq, lse + (b * s.heads + h + 1) * Lq, row_lse.begin());
      std::fill(dK, dK + Lk * d, 0.0f);
      std::fill(dV, dV + Lk * d, 0.0f);
      for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
        auto add_mask_grad = [&](index_t j0, index_t n, float* __restrict__ dST) {
          if (!grad_mask) return;
          for (index_t r = 0; r < n; ++r) {
            const float* __restrict__ g = grad_maskT + (b * Lk + j0 + r) * padded + i0;
            for (index_t x = 0; x < kQueryBlock; ++x) dST[r * kQueryBlock + x] += g[x] * inv_heads;
          }
        };
        transpose(kQueryBlock, d, Q.data() + i0 * d, d, QT.data(), kQueryBlock);
        transpose(kQueryBlock, d, dO.data() + i0 * d, d, dOT.data(), kQueryBlock);
        std::fill(dQT.begin(), dQT.end(), 0.0f);
        attend_columns_backward(QT.data(), Q.data() + i0 * d, dOT.data(), dO.data() + i0 * d,
                                row_lse.data() + i0, D.data() + i0, K, V, Lk, d, w, dQT.data(), dK, dV,
                                add_mask_grad);
        transpose(d, kQueryBlock, dQT.data(), kQueryBlock, dQ.data(), d, s.scale);
        for (index_t i = 0; i < std::min(kQueryBlock, Lq - i0); ++i)
          copy_row(dQ.data() + i * d, d, grad_q + (b * Lq + i0 + i) * C + c0);
      }
      for (index_t j = 0; j < Lk; ++j) {
        copy_row(dK + j * d, d, grad_k + (b * Lk + j) * C + c0);
        copy_row(dV + j * d, d, grad_v + (b * Lk + j) * C + c0);
      }
    }
  }
}

}  // namespace hrvit
