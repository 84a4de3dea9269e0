// Cross-shaped (stripe) window attention, forward and backward, fp32, straight from token layout.
//
// One work unit is (batch, half, stripe, head): it owns the output and gradient entries of its
// tokens and channels exclusively, so units run in parallel without synchronisation. A unit gathers
// its stripe's rows into cache-resident tiles and runs an online (flash-style) softmax over key
// blocks; only the stripe's real tokens take part (the last stripe is shorter, never padded).
#include <algorithm>
#include <vector>

#include "hrvit/kernels/cswin_attention.h"

#include "hrvit/attention_tiles.h"
#include "hrvit/fast_math.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

struct Unit {
  index_t batch, half, stripe, head;
};

index_t stripes_of(const StripeShape& s, index_t half) {
  const index_t side = half == 0 ? s.height : s.width;
  return (side + s.stripe_width - 1) / s.stripe_width;
}

index_t unit_count(const StripeShape& s) {
  return s.batch * (stripes_of(s, 0) + stripes_of(s, 1)) * s.heads;
}

Unit unit_at(const StripeShape& s, index_t i) {
  const index_t h_units = stripes_of(s, 0) * s.heads;
  const index_t per_batch = h_units + stripes_of(s, 1) * s.heads;
  index_t r = i % per_batch;
  const index_t half = r >= h_units ? 1 : 0;
  r -= half * h_units;
  return {i / per_batch, half, r / s.heads, r % s.heads};
}

// Token indices of a stripe, in row-major order of the image.
void stripe_tokens(const StripeShape& s, const Unit& u, std::vector<index_t>& tokens) {
  tokens.clear();
  const index_t start = u.stripe * s.stripe_width;
  if (u.half == 0) {
    const index_t rows = std::min(s.stripe_width, s.height - start);
    for (index_t t = start * s.width; t < (start + rows) * s.width; ++t) tokens.push_back(t);
  } else {
    const index_t cols = std::min(s.stripe_width, s.width - start);
    for (index_t y = 0; y < s.height; ++y)
      for (index_t x = start; x < start + cols; ++x) tokens.push_back(y * s.width + x);
  }
}

index_t channel_offset(const StripeShape& s, const Unit& u) {
  return u.half * (s.channels / 2) + u.head * s.head_dim;
}

index_t lse_row(const StripeShape& s, const Unit& u) {
  return (u.batch * 2 * s.heads + u.half * s.heads + u.head) * s.height * s.width;
}

template <typename Out>
void forward_units(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v, Out* out, float* lse,
                   int num_threads) {
  const index_t d = s.head_dim, C = s.channels, N = s.height * s.width;
  const bool aliased = k.address() == v.address() && k.sb == v.sb && k.sn == v.sn;
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    std::vector<index_t> tokens;
    std::vector<float> K, V, QT(d * kQueryBlock), O(kQueryBlock * d), block_lse(kQueryBlock);
    // Values as rows (L x d, O as rows, no transposes; with k aliasing v the key tile serves as both)
    // or as V^T (d x L, O^T): rows measured 5-10% faster for d = 32, up to 13% slower for 16 and 24.
    const bool value_rows = d % kLanes == 0 && d >= 2 * kLanes;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t ui = 0; ui < unit_count(s); ++ui) {
      const Unit u = unit_at(s, ui);
      stripe_tokens(s, u, tokens);
      const index_t L = static_cast<index_t>(tokens.size()), c0 = channel_offset(s, u);
      K.resize(L * d);
      gather(k, u.batch, tokens, c0, d, K.data());
      const float* values = K.data();
      if (!value_rows || !aliased) {
        V.resize(L * d);
        if (aliased)
          transpose(L, d, K.data(), d, V.data(), L);
        else if (value_rows)
          gather(v, u.batch, tokens, c0, d, V.data());
        else
          gather_columns(v, u.batch, tokens.data(), L, L, c0, d, 1.0f, V.data(), L);
        values = V.data();
      }
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        // Q^T of the block, scaled: base-2 logits = (scale log2(e) q) k^T.
        gather_columns(q, u.batch, tokens.data() + i0, m, kQueryBlock, c0, d, s.scale * kLog2e, QT.data(),
                       kQueryBlock);
        if (value_rows)
          attend_columns<true>(QT.data(), K.data(), d, values, d, L, d, w, O.data(), block_lse.data());
        else
          attend_columns<false>(QT.data(), K.data(), d, values, L, L, d, w, O.data(), block_lse.data());
        for (index_t i = 0; i < m; ++i) {
          const index_t t = tokens[i0 + i];
          Out* dst = out + (u.batch * N + t) * C + c0;
          if (value_rows)
            store_row(O.data() + i * d, d, dst);
          else
            for (index_t c = 0; c < d; ++c) dst[c] = from_float<Out>(O[c * kQueryBlock + i]);
          lse[lse_row(s, u) + t] = block_lse[i];
        }
      }
    }
  }
}

#ifdef HRVIT_BF16_DOT
// The forward pass on bf16 q, k, v with bf16 matrix products (attend_columns_bf16): per unit, keys as
// bf16 rows and V^T (its rows padded to an even length: the pair layout of keys); per query block, the
// queries as pair rows.
HRVIT_BF16_TARGET void forward_units_bf16_dot(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                              bf16_t* out, float* lse, int num_threads) {
  const index_t d = s.head_dim, C = s.channels, N = s.height * s.width;
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    std::vector<index_t> tokens;
    std::vector<bf16_t> K, VT, QTp(d * kQueryBlock), PTp((kKeyBlock + 1) / 2 * 2 * kQueryBlock);
    std::vector<float> OT(d * kQueryBlock), block_lse(kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t ui = 0; ui < unit_count(s); ++ui) {
      const Unit u = unit_at(s, ui);
      stripe_tokens(s, u, tokens);
      const index_t L = static_cast<index_t>(tokens.size()), c0 = channel_offset(s, u), ld_vt = (L + 1) / 2 * 2;
      K.resize(L * d);
      VT.assign(d * ld_vt, 0);
      for (index_t j = 0; j < L; ++j) {
        const bf16_t* k_row = k.data16 + u.batch * k.sb + tokens[j] * k.sn + c0;
        const bf16_t* v_row = v.data16 + u.batch * v.sb + tokens[j] * v.sn + c0;
        __builtin_memcpy(K.data() + j * d, k_row, d * sizeof(bf16_t));
        for (index_t c = 0; c < d; ++c) VT[c * ld_vt + j] = v_row[c];
      }
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        std::fill(QTp.begin(), QTp.end(), bf16_t{0});  // padding queries: zero logits, outputs not stored
        for (index_t i = 0; i < m; ++i) {
          const bf16_t* q_row = q.data16 + u.batch * q.sb + tokens[i0 + i] * q.sn + c0;
          for (index_t c = 0; c < d; ++c) QTp[c / 2 * 2 * kQueryBlock + 2 * i + c % 2] = q_row[c];
        }
        attend_columns_bf16(QTp.data(), K.data(), d, VT.data(), ld_vt, L, d, s.scale * kLog2e, w, PTp.data(),
                            OT.data(), block_lse.data());
        for (index_t i = 0; i < m; ++i) {
          const index_t t = tokens[i0 + i];
          bf16_t* dst = out + (u.batch * N + t) * C + c0;
          for (index_t c = 0; c < d; ++c) dst[c] = to_bf16(OT[c * kQueryBlock + i]);
          lse[lse_row(s, u) + t] = block_lse[i];
        }
      }
    }
  }
}
#endif

}  // namespace

void cswin_attention_forward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v, void* out,
                             bool out_bf16, bool bf16_dots, float* lse, int num_threads) {
#ifdef HRVIT_BF16_DOT
  if (bf16_dots && out_bf16 && q.data16 && k.data16 && v.data16 && s.head_dim % 2 == 0 && cpu_has_bf16_dot())
    return forward_units_bf16_dot(s, q, k, v, static_cast<bf16_t*>(out), lse, num_threads);
#else
  (void)bf16_dots;
#endif
  if (out_bf16)
    forward_units(s, q, k, v, static_cast<bf16_t*>(out), lse, num_threads);
  else
    forward_units(s, q, k, v, static_cast<float*>(out), lse, num_threads);
}

void cswin_attention_backward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                              TokenTensor out, const float* lse, TokenTensor grad_out, bool kv_aliased,
                              float* grad_q, float* grad_k, float* grad_v, int num_threads) {
  const index_t d = s.head_dim, C = s.channels, N = s.height * s.width;
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    AttentionScratch w;
    std::vector<index_t> tokens;
    // Row buffers are padded with zero rows to whole query blocks (see attend_columns_backward).
    std::vector<float> Q, dO, O, K, V_rows, dK, dV, D, row_lse;
    std::vector<float> QT(d * kQueryBlock), dOT(d * kQueryBlock), dQT(d * kQueryBlock), dQ(kQueryBlock * d);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t ui = 0; ui < unit_count(s); ++ui) {
      const Unit u = unit_at(s, ui);
      stripe_tokens(s, u, tokens);
      const index_t L = static_cast<index_t>(tokens.size()), c0 = channel_offset(s, u);
      const index_t padded = (L + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
      for (auto* buf : {&Q, &dO, &O}) buf->assign(padded * d, 0.0f);
      for (auto* buf : {&D, &row_lse}) buf->assign(padded, 0.0f);
      for (auto* buf : {&dK, &dV}) buf->assign(L * d, 0.0f);
      K.resize(L * d);
      gather(q, u.batch, tokens, c0, d, Q.data());
      for (float& x : Q) x *= s.scale;
      gather(k, u.batch, tokens, c0, d, K.data());
      const float* V = K.data();
      if (!kv_aliased) {
        V_rows.resize(L * d);
        gather(v, u.batch, tokens, c0, d, V_rows.data());
        V = V_rows.data();
      }
      gather(out, u.batch, tokens, c0, d, O.data());
      gather(grad_out, u.batch, tokens, c0, d, dO.data());
      row_dots(dO.data(), O.data(), L, d, D.data());
      for (index_t i = 0; i < L; ++i) row_lse[i] = lse[lse_row(s, u) + tokens[i]];
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        // Q^T as the forward built it (base-2 logits, the same rounding).
        gather_columns(q, u.batch, tokens.data() + i0, std::min(kQueryBlock, L - i0), kQueryBlock, c0, d,
                       s.scale * kLog2e, QT.data(), kQueryBlock);
        transpose(kQueryBlock, d, dO.data() + i0 * d, d, dOT.data(), kQueryBlock);
        std::fill(dQT.begin(), dQT.end(), 0.0f);
        attend_columns_backward(QT.data(), Q.data() + i0 * d, dOT.data(), dO.data() + i0 * d,
                                row_lse.data() + i0, D.data() + i0, K.data(), V, L, d, w,
                                dQT.data(), dK.data(), dV.data());
        transpose(d, kQueryBlock, dQT.data(), kQueryBlock, dQ.data(), d, s.scale);
        for (index_t i = 0; i < std::min(kQueryBlock, L - i0); ++i)
          write_row(dQ.data() + i * d, d, grad_q + (u.batch * N + tokens[i0 + i]) * C + c0);
      }
      if (kv_aliased)
        for (index_t x = 0; x < L * d; ++x) dV[x] += dK[x];
      for (index_t i = 0; i < L; ++i) {
        const index_t row = (u.batch * N + tokens[i]) * C + c0;
        write_row(dV.data() + i * d, d, grad_v + row);
        if (!kv_aliased) write_row(dK.data() + i * d, d, grad_k + row);
      }
    }
    stores_done();
  }
}

}  // namespace hrvit
