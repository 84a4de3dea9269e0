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
  const std::vector<index_t> queries = iota(Lq), keys = iota(Lk);
  const float inv_heads = 1.0f / static_cast<float>(s.heads);
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    std::vector<float> Q(Lq * d), O(Lq * d), dO(Lq * d), dQ(Lq * d), D(Lq);
    std::vector<float> K(Lk * d), KT(Lk * d), VT(Lk * d), dK(Lk * d), dV(Lk * d);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t unit = 0; unit < s.batch * s.heads; ++unit) {
      const index_t b = unit / s.heads, h = unit % s.heads, c0 = h * d;
      gather(q, b, queries, c0, d, Q.data(), false);
      for (float& x : Q) x *= s.scale;
      gather(k, b, keys, c0, d, K.data(), false);
      transpose(Lk, d, K.data(), d, KT.data(), Lk);
      gather(v, b, keys, c0, d, VT.data(), true);
      gather(out, b, queries, c0, d, O.data(), false);
      gather(grad_out, b, queries, c0, d, dO.data(), false);
      row_dots(dO.data(), O.data(), Lq, d, D.data());
      for (auto* buf : {&dQ, &dK, &dV}) std::fill(buf->begin(), buf->end(), 0.0f);
      // The mask is the mean of the heads' logits: each head's logits get grad_mask / heads.
      auto add_mask_grad = [&](index_t i0, index_t m, index_t j0, index_t n, float* dS) {
        if (grad_mask == nullptr) return;
        for (index_t i = 0; i < m; ++i) {
          const float* __restrict__ g = grad_mask + (b * Lq + i0 + i) * Lk + j0;
          float* __restrict__ row = dS + i * kKeyBlock;
          for (index_t j = 0; j < n; ++j) row[j] += g[j] * inv_heads;
        }
      };
      attend_backward(Q.data(), Lq, K.data(), KT.data(), VT.data(), Lk, d, dO.data(),
                      lse + (b * s.heads + h) * Lq, D.data(), w, dQ.data(), dK.data(), dV.data(),
                      add_mask_grad);
      for (index_t i = 0; i < Lq; ++i)
        for (index_t c = 0; c < d; ++c) grad_q[(b * Lq + i) * C + c0 + c] = dQ[i * d + c] * s.scale;
      for (index_t j = 0; j < Lk; ++j)
        for (index_t c = 0; c < d; ++c) {
          grad_k[(b * Lk + j) * C + c0 + c] = dK[j * d + c];
          grad_v[(b * Lk + j) * C + c0 + c] = dV[j * d + c];
        }
    }
  }
}

}  // namespace hrvit
