// Cross-shaped (stripe) window attention, forward and backward, fp32, straight from token layout.
//
// One work unit is (batch, half, stripe, head): it owns the output and gradient entries of its
// tokens and channels exclusively, so units run in parallel without synchronisation. A unit gathers
// its stripe's rows into cache-resident tiles and runs an online (flash-style) softmax over key tiles;
// only the stripe's real tokens take part (the last stripe is shorter, never padded).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hrvit/gemm.h"
#include "hrvit/kernels.h"

namespace hrvit {
namespace {

constexpr index_t kQueryBlock = 32;
constexpr index_t kKeyBlock = 128;

struct Unit {
  index_t batch, half, stripe, head;
};

index_t stripes_of(const StripeShape& s, index_t half) {
  const index_t side = half == 0 ? s.height : s.width;
  return (side + s.stripe_width - 1) / s.stripe_width;
}

Unit unit_at(const StripeShape& s, index_t i) {
  const index_t h_stripes = stripes_of(s, 0), v_stripes = stripes_of(s, 1);
  const index_t per_batch = (h_stripes + v_stripes) * s.heads;
  Unit u{i / per_batch, 0, 0, 0};
  index_t r = i % per_batch;
  if (r >= h_stripes * s.heads) {
    u.half = 1;
    r -= h_stripes * s.heads;
  }
  u.stripe = r / s.heads;
  u.head = r % s.heads;
  return u;
}

index_t unit_count(const StripeShape& s) {
  return s.batch * (stripes_of(s, 0) + stripes_of(s, 1)) * s.heads;
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

// rows[i][d] = t[batch][tokens[i]][c0 + d]; if transposed, cols[d][i] instead.
void gather(TokenTensor t, index_t batch, const std::vector<index_t>& tokens, index_t c0, index_t d,
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

// S (m x n, row stride kKeyBlock) = A (m x d) * BT[:, j0:j0+n] (BT is d x L).
void scores(const float* A, index_t m, const float* BT, index_t L, index_t j0, index_t n, index_t d,
            float* S) {
  for (index_t i = 0; i < m; ++i) std::fill(S + i * kKeyBlock, S + i * kKeyBlock + n, 0.0f);
  gemm_acc(m, n, d, A, d, BT + j0, L, S, kKeyBlock);
}

struct Workspace {
  std::vector<index_t> tokens;
  std::vector<float> Q, K, KT, V, VT, S, dP, T, O, dO, dQ, dK, dV, acc, m, l, D, lse;
};

}  // namespace

void cswin_attention_forward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                             float* out, float* lse, int num_threads) {
  const index_t d = s.head_dim, C = s.channels, N = s.height * s.width;
  const bool aliased = k.data == v.data && k.sb == v.sb && k.sn == v.sn;
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    Workspace w;
    w.S.resize(kQueryBlock * kKeyBlock);
    w.acc.resize(kQueryBlock * d);
    w.m.resize(kQueryBlock);
    w.l.resize(kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t ui = 0; ui < unit_count(s); ++ui) {
      const Unit u = unit_at(s, ui);
      stripe_tokens(s, u, w.tokens);
      const index_t L = static_cast<index_t>(w.tokens.size()), c0 = channel_offset(s, u);
      w.Q.resize(L * d);
      w.KT.resize(L * d);
      w.V.resize(L * d);
      gather(q, u.batch, w.tokens, c0, d, w.Q.data(), false);
      for (float& x : w.Q) x *= s.scale;  // logits = (scale q) k^T
      gather(k, u.batch, w.tokens, c0, d, w.KT.data(), true);
      if (aliased) {  // V is the transpose of the tile already read
        for (index_t i = 0; i < L; ++i)
          for (index_t c = 0; c < d; ++c) w.V[i * d + c] = w.KT[c * L + i];
      } else {
        gather(v, u.batch, w.tokens, c0, d, w.V.data(), false);
      }
      float* lse_row = lse + (u.batch * 2 * s.heads + u.half * s.heads + u.head) * N;
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        std::fill(w.m.begin(), w.m.end(), -std::numeric_limits<float>::infinity());
        std::fill(w.l.begin(), w.l.end(), 0.0f);
        std::fill(w.acc.begin(), w.acc.end(), 0.0f);
        for (index_t j0 = 0; j0 < L; j0 += kKeyBlock) {
          const index_t n = std::min(kKeyBlock, L - j0);
          scores(w.Q.data() + i0 * d, m, w.KT.data(), L, j0, n, d, w.S.data());
          for (index_t i = 0; i < m; ++i) {
            float* __restrict__ row = w.S.data() + i * kKeyBlock;
            const float mx = max_of(row, n, w.m[i]);
            const float alpha = exp_approx(w.m[i] - mx);  // 0 on the first tile (m = -inf)
            exp_shifted_inplace(row, n, mx);
            float* acc = w.acc.data() + i * d;
            for (index_t c = 0; c < d; ++c) acc[c] *= alpha;
            w.l[i] = w.l[i] * alpha + sum_of(row, n);
            w.m[i] = mx;
          }
          gemm_acc(m, d, n, w.S.data(), kKeyBlock, w.V.data() + j0 * d, d, w.acc.data(), d);
        }
        for (index_t i = 0; i < m; ++i) {
          const index_t t = w.tokens[i0 + i];
          const float inv = 1.0f / w.l[i];
          float* dst = out + (u.batch * N + t) * C + c0;
          for (index_t c = 0; c < d; ++c) dst[c] = w.acc[i * d + c] * inv;
          lse_row[t] = w.m[i] + std::log(w.l[i]);
        }
      }
    }
  }
}

void cswin_attention_backward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                              TokenTensor out, const float* lse, TokenTensor grad_out, bool kv_aliased,
                              float* grad_q, float* grad_k, float* grad_v, int num_threads) {
  const index_t d = s.head_dim, C = s.channels, N = s.height * s.width;
#ifdef _OPENMP
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : 1)
#endif
  {
    Workspace w;
    w.S.resize(kQueryBlock * kKeyBlock);
    w.dP.resize(kQueryBlock * kKeyBlock);
    w.T.resize(kKeyBlock * kQueryBlock);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t ui = 0; ui < unit_count(s); ++ui) {
      const Unit u = unit_at(s, ui);
      stripe_tokens(s, u, w.tokens);
      const index_t L = static_cast<index_t>(w.tokens.size()), c0 = channel_offset(s, u);
      for (auto* buf : {&w.Q, &w.K, &w.KT, &w.VT, &w.O, &w.dO}) buf->resize(L * d);
      w.dQ.assign(L * d, 0.0f);
      w.dK.assign(L * d, 0.0f);
      w.dV.assign(L * d, 0.0f);
      w.D.resize(L);
      w.lse.resize(L);
      gather(q, u.batch, w.tokens, c0, d, w.Q.data(), false);
      for (float& x : w.Q) x *= s.scale;  // logits = (scale q) k^T; dK below is then dS^T (scale q)
      gather(k, u.batch, w.tokens, c0, d, w.K.data(), false);
      transpose(L, d, w.K.data(), d, w.KT.data(), L);
      if (kv_aliased)
        w.VT = w.KT;
      else
        gather(v, u.batch, w.tokens, c0, d, w.VT.data(), true);
      gather(out, u.batch, w.tokens, c0, d, w.O.data(), false);
      gather(grad_out, u.batch, w.tokens, c0, d, w.dO.data(), false);
      const float* lse_row = lse + (u.batch * 2 * s.heads + u.half * s.heads + u.head) * N;
      for (index_t i = 0; i < L; ++i) {
        float dot = 0.0f;
        for (index_t c = 0; c < d; ++c) dot += w.dO[i * d + c] * w.O[i * d + c];
        w.D[i] = dot;
        w.lse[i] = lse_row[w.tokens[i]];
      }
      for (index_t i0 = 0; i0 < L; i0 += kQueryBlock) {
        const index_t m = std::min(kQueryBlock, L - i0);
        for (index_t j0 = 0; j0 < L; j0 += kKeyBlock) {
          const index_t n = std::min(kKeyBlock, L - j0);
          scores(w.Q.data() + i0 * d, m, w.KT.data(), L, j0, n, d, w.S.data());
          scores(w.dO.data() + i0 * d, m, w.VT.data(), L, j0, n, d, w.dP.data());
          for (index_t i = 0; i < m; ++i) {
            float* __restrict__ p = w.S.data() + i * kKeyBlock;    // becomes P
            float* __restrict__ ds = w.dP.data() + i * kKeyBlock;  // becomes dS
            const float row_lse = w.lse[i0 + i], row_D = w.D[i0 + i];
            exp_shifted_inplace(p, n, row_lse);
            for (index_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - row_D);
          }
          // dQ += dS K;  dV += P^T dO;  dK += dS^T (scale q)
          gemm_acc(m, d, n, w.dP.data(), kKeyBlock, w.K.data() + j0 * d, d, w.dQ.data() + i0 * d, d);
          transpose(m, n, w.S.data(), kKeyBlock, w.T.data(), kQueryBlock);
          gemm_acc(n, d, m, w.T.data(), kQueryBlock, w.dO.data() + i0 * d, d, w.dV.data() + j0 * d, d);
          transpose(m, n, w.dP.data(), kKeyBlock, w.T.data(), kQueryBlock);
          gemm_acc(n, d, m, w.T.data(), kQueryBlock, w.Q.data() + i0 * d, d, w.dK.data() + j0 * d, d);
        }
      }
      for (index_t i = 0; i < L; ++i) {
        const index_t row = (u.batch * N + w.tokens[i]) * C + c0;
        for (index_t c = 0; c < d; ++c) {
          grad_q[row + c] = w.dQ[i * d + c] * s.scale;
          if (kv_aliased) {
            grad_v[row + c] = w.dV[i * d + c] + w.dK[i * d + c];
          } else {
            grad_k[row + c] = w.dK[i * d + c];
            grad_v[row + c] = w.dV[i * d + c];
          }
        }
      }
    }
  }
}

}  // namespace hrvit
