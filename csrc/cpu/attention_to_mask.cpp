// Attention-to-mask (SegViT's ATM), forward and backward, fp32.
//
// Forward units are (batch, block of queries) with every head inside, so each unit owns its rows of
// the head-averaged mask logits; backward units are (batch, head), which own that head's channels
// of dq, dk and dv. Neither needs synchronisation, and the per-head logits are never stored.
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

}  // namespace

void attention_to_mask_forward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                               float* out, float* mask, float* lse, int num_threads) {
  const index_t d = s.channels / s.heads, Lq = s.queries, Lk = s.keys, C = s.channels;
  const index_t blocks = (Lq + kQueryBlock - 1) / kQueryBlock;
  const float inv_heads = 1.0f / static_cast<float>(s.heads);
  // Values transposed once, (B, C, L): every unit reads its head's rows as the second product's A.
  std::vector<float> vt(static_cast<size_t>(s.batch * C * Lk));
  parallel_for(s.batch * s.heads, num_threads, [&](index_t bh) {
    const index_t b = bh / s.heads, h = bh % s.heads;
    transpose(Lk, d, v.data + b * v.sb + h * d, v.sn, vt.data() + (b * C + h * d) * Lk, Lk);
  });
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    // maskT: the unit's head-mean logits, keys x queries, the layout attend_columns produces them in.
    std::vector<float> QT(d * kQueryBlock), OT(d * kQueryBlock), block_lse(kQueryBlock),
        maskT(Lk * kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * blocks; ++unit) {
      const index_t b = unit / blocks, i0 = (unit % blocks) * kQueryBlock;
      const index_t m = std::min(kQueryBlock, Lq - i0);
      for (index_t h = 0; h < s.heads; ++h) {
        // Q^T of the block and head, scaled; columns past m stay zero.
        std::fill(QT.begin(), QT.end(), 0.0f);
        for (index_t i = 0; i < m; ++i) {
          const float* src = q.data + b * q.sb + (i0 + i) * q.sn + h * d;
          for (index_t c = 0; c < d; ++c) QT[c * kQueryBlock + i] = src[c] * s.scale;
        }
        auto add_to_mask = [&](index_t j0, index_t n, const float* ST) {
          float* __restrict__ dst = maskT.data() + j0 * kQueryBlock;
          if (h == 0)
            for (index_t x = 0; x < n * kQueryBlock; ++x) dst[x] = ST[x] * inv_heads;
          else
            for (index_t x = 0; x < n * kQueryBlock; ++x) dst[x] += ST[x] * inv_heads;
        };
        attend_columns(QT.data(), k.data + b * k.sb + h * d, k.sn, vt.data() + (b * C + h * d) * Lk, Lk, Lk,
                       d, w, OT.data(), block_lse.data(), add_to_mask);
        for (index_t i = 0; i < m; ++i) {
          float* dst = out + (b * Lq + i0 + i) * C + h * d;
          for (index_t c = 0; c < d; ++c) dst[c] = OT[c * kQueryBlock + i];
          lse[(b * s.heads + h) * Lq + i0 + i] = block_lse[i];
        }
      }
      transpose(Lk, m, maskT.data(), kQueryBlock, mask + (b * Lq + i0) * Lk, Lk);
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
  std::vector<float> grad_maskT(grad_mask ? static_cast<size_t>(s.batch * Lk * padded) : 0, 0.0f);
  if (grad_mask)
    parallel_for(s.batch, num_threads, [&](index_t b) {
      transpose(Lq, Lk, grad_mask + b * Lq * Lk, Lk, grad_maskT.data() + b * Lk * padded, padded);
    });
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    // Query-side rows padded with zero rows to whole blocks (see attend_columns_backward).
    std::vector<float> Q(padded * d), O(padded * d), dO(padded * d), D(padded), row_lse(padded);
    std::vector<float> QT(d * kQueryBlock), dOT(d * kQueryBlock), dQT(d * kQueryBlock);
    std::vector<float> K(Lk * d), KT(Lk * d), V(Lk * d), dK(Lk * d), dV(Lk * d);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * s.heads; ++unit) {
      const index_t b = unit / s.heads, h = unit % s.heads, c0 = h * d;
      for (auto* buf : {&Q, &O, &dO, &D, &row_lse}) std::fill(buf->begin(), buf->end(), 0.0f);
      gather(q, b, queries, c0, d, Q.data(), false);
      for (float& x : Q) x *= s.scale;
      gather(k, b, keys, c0, d, K.data(), false);
      transpose(Lk, d, K.data(), d, KT.data(), Lk);
      gather(v, b, keys, c0, d, V.data(), false);
      gather(out, b, queries, c0, d, O.data(), false);
      gather(grad_out, b, queries, c0, d, dO.data(), false);
      row_dots(dO.data(), O.data(), Lq, d, D.data());
      std::copy(lse + (b * s.heads + h) * Lq, lse + (b * s.heads + h + 1) * Lq, row_lse.begin());
      std::fill(dK.begin(), dK.end(), 0.0f);
      std::fill(dV.begin(), dV.end(), 0.0f);
      for (index_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
        auto add_mask_grad = [&](index_t j0, index_t n, float* __restrict__ dST) {
          if (!grad_mask) return;
          for (index_t r = 0; r < n; ++r) {
            const float* __restrict__ g = grad_maskT.data() + (b * Lk + j0 + r) * padded + i0;
            for (index_t x = 0; x < kQueryBlock; ++x) dST[r * kQueryBlock + x] += g[x] * inv_heads;
          }
        };
        transpose(kQueryBlock, d, Q.data() + i0 * d, d, QT.data(), kQueryBlock);
        transpose(kQueryBlock, d, dO.data() + i0 * d, d, dOT.data(), kQueryBlock);
        std::fill(dQT.begin(), dQT.end(), 0.0f);
        attend_columns_backward(QT.data(), Q.data() + i0 * d, dOT.data(), dO.data() + i0 * d,
                                row_lse.data() + i0, D.data() + i0, K.data(), V.data(), KT.data(), Lk, d, w,
                                dQT.data(), dK.data(), dV.data(), add_mask_grad);
        for (index_t i = 0; i < std::min(kQueryBlock, Lq - i0); ++i)
          for (index_t c = 0; c < d; ++c) grad_q[(b * Lq + i0 + i) * C + c0 + c] = dQT[c * kQueryBlock + i] * s.scale;
      }
      for (index_t j = 0; j < Lk; ++j)
        for (index_t c = 0; c < d; ++c) {
          grad_k[(b * Lk + j) * C + c0 + c] = dK[j * d + c];
          grad_v[(b * Lk + j) * C + c0 + c] = dV[j * d + c];
        }
    }
  }
}

}  // namespace hrvit
