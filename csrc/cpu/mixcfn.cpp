// MixCFN mixed-scale depthwise convolution (3x3 on the first `split` channels, 5x5 on the rest,
// zero padding, bias) + exact GELU, in token layout, forward and backward. fp32 compute; the forward
// pass also reads and writes bf16 tokens. The row convolution is hrvit/depthwise_conv.h's.
#include <algorithm>
#include <vector>

#include "hrvit/kernels/mixcfn.h"

#include "hrvit/bf16.h"
#include "hrvit/depthwise_conv.h"
#include "hrvit/fast_math.h"
#include "hrvit/gemm.h"
#include "hrvit/scratch.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

using depthwise::conv_row;
using depthwise::lanes;
using depthwise::taps_inside;

// Both halves of the mixed conv for output row h of one image, then GELU if Gelu: out[w * R + r].
template <bool Gelu>
void mix_conv_row(const MixConvShape& s, const float* xb, index_t x_sn, index_t h, const float* w3t,
                  const float* b3, const float* w5t, const float* b5, float* out) {
  const index_t R = s.channels, c3 = s.split;
  conv_row<3, Gelu>(xb, x_sn, s.height, s.width, h, w3t, b3, c3, out, R);
  conv_row<5, Gelu>(xb + c3, x_sn, s.height, s.width, h, w5t, b5, R - c3, out + c3, R);
}

// Tap-major weights (K*K, c) flipped in both spatial directions: the input gradient of a
// depthwise conv is the conv of the output gradient with the flipped kernel.
std::vector<float> flipped(const float* wt, int K, index_t c) {
  std::vector<float> out(static_cast<size_t>(K * K * c));
  for (int tap = 0; tap < K * K; ++tap)
    std::copy(wt + tap * c, wt + (tap + 1) * c, out.begin() + (K * K - 1 - tap) * c);
  return out;
}

// Weight and bias gradient contributions of output row h: wgrad[tap][j] += sum_w g[w][j] * x[w+off][j]
// and bgrad[j] += sum_w g[w][j], for channels [c0, c) of a K x K conv, in blocks of 2 * L channels
// while they fit; returns the first channel left.
template <int K, index_t L>
index_t weight_grad_row_blocks(const float* x, index_t x_sn, const float* g, index_t g_sn, index_t H,
                               index_t W, index_t h, index_t c, float* wgrad, float* bgrad, index_t c0) {
  typedef lanes<L> V;
  constexpr index_t r = K / 2;
  const auto [dy0, dy1] = taps_inside(r, h, H);
  for (; c0 + 2 * L <= c; c0 += 2 * L) {
    V b0{}, b1{};
    for (index_t w = 0; w < W; ++w) {
      b0 += load<V>(g + w * g_sn + c0);
      b1 += load<V>(g + w * g_sn + c0 + L);
    }
    store(bgrad + c0, load<V>(bgrad + c0) + b0);
    store(bgrad + c0 + L, load<V>(bgrad + c0 + L) + b1);
    for (index_t dy = dy0; dy <= dy1; ++dy) {
      const float* xrow = x + (h + dy) * W * x_sn + c0;
      for (index_t dx = -r; dx <= r; ++dx) {
        V a0{}, a1{};
        for (index_t w = std::max<index_t>(0, -dx); w < std::min(W, W - dx); ++w) {
          const float* gw = g + w * g_sn + c0;
          const float* xw = xrow + (w + dx) * x_sn;
          a0 += load<V>(gw) * load<V>(xw);
          a1 += load<V>(gw + L) * load<V>(xw + L);
        }
        float* dst = wgrad + ((dy + r) * K + (dx + r)) * c + c0;
        store(dst, load<V>(dst) + a0);
        store(dst + L, load<V>(dst + L) + a1);
      }
    }
  }
  return c0;
}

template <int K>
void weight_grad_row(const float* x, index_t x_sn, const float* g, index_t g_sn, index_t H, index_t W,
                     index_t h, index_t c, float* wgrad, float* bgrad) {
  constexpr index_t r = K / 2;
  const auto [dy0, dy1] = taps_inside(r, h, H);
  index_t c0 = weight_grad_row_blocks<K, kLanes>(x, x_sn, g, g_sn, H, W, h, c, wgrad, bgrad, 0);
  if constexpr (kLanes > 8) c0 = weight_grad_row_blocks<K, 8>(x, x_sn, g, g_sn, H, W, h, c, wgrad, bgrad, c0);
  if constexpr (kLanes > 4) c0 = weight_grad_row_blocks<K, 4>(x, x_sn, g, g_sn, H, W, h, c, wgrad, bgrad, c0);
  for (; c0 < c; ++c0) {  // fewer than 8 channels left: one at a time
    for (index_t w = 0; w < W; ++w) bgrad[c0] += g[w * g_sn + c0];
    for (index_t dy = dy0; dy <= dy1; ++dy)
      for (index_t dx = -r; dx <= r; ++dx) {
        float sum = 0.0f;
        for (index_t w = std::max<index_t>(0, -dx); w < std::min(W, W - dx); ++w)
          sum += g[w * g_sn + c0] * x[((h + dy) * W + w + dx) * x_sn + c0];
        wgrad[((dy + r) * K + (dx + r)) * c + c0] += sum;
      }
  }
}

}  // namespace

void mix_conv_gelu_forward(const MixConvShape& s, const float* x, index_t x_sb, index_t x_sn,
                           const float* w3t, const float* b3, const float* w5t, const float* b5,
                           float* out, int num_threads) {
  const index_t H = s.height, W = s.width, R = s.channels;
  parallel_for(s.batch * H, num_threads, [&](index_t row) {
    const index_t b = row / H, h = row % H;
    mix_conv_row<true>(s, x + b * x_sb, x_sn, h, w3t, b3, w5t, b5, out + row * W * R);
  });
}

void mix_conv_gelu_forward_bf16(const MixConvShape& s, const bf16_t* x, index_t x_sb, index_t x_sn,
                                const float* w3t, const float* b3, const float* w5t, const float* b5,
                                bf16_t* out, int num_threads) {
  // Blocks of output rows: each converts the input rows its taps reach (the block and 2 rows either
  // side) to fp32 once, computes its rows in fp32 and stores them as bf16.
  constexpr index_t kRowBlock = 8, reach = 2;
  const index_t H = s.height, W = s.width, R = s.channels;
  const index_t blocks = (H + kRowBlock - 1) / kRowBlock;
  parallel_for(s.batch * blocks, num_threads, [&](index_t task) {
    thread_local std::vector<float> band_rows, out_row;
    const index_t b = task / blocks, h0 = task % blocks * kRowBlock, h1 = std::min(H, h0 + kRowBlock);
    const index_t lo = std::max<index_t>(0, h0 - reach), hi = std::min(H, h1 + reach);
    float* band = kept(band_rows, (hi - lo) * W * R);
    float* row_out = kept(out_row, W * R);
    for (index_t t = lo * W; t < hi * W; ++t) load_row(x + b * x_sb + t * x_sn, R, band + (t - lo * W) * R);
    // The band addressed as the whole image: the conv reads only rows [lo, hi) of it.
    const float* image = band - lo * W * R;
    for (index_t h = h0; h < h1; ++h) {
      mix_conv_row<true>(s, image, R, h, w3t, b3, w5t, b5, row_out);
      store_row(row_out, W * R, out + (b * H + h) * W * R);
    }
  });
}

void mix_conv_gelu_backward(const MixConvShape& s, const float* x, index_t x_sb, index_t x_sn,
                            const float* grad_out, index_t g_sb, index_t g_sn, const float* w3t,
                            const float* b3, const float* w5t, const float* b5, float* grad_x,
                            float* grad_w3t, float* grad_b3, float* grad_w5t, float* grad_b5,
                            int num_threads) {
  const index_t B = s.batch, H = s.height, W = s.width, R = s.channels, c3 = s.split, c5 = R - c3;
  const index_t rows = B * H, N = H * W;

  // 1. Gradient at the pre-activation: grad_out * GELU'(conv(x)), the conv recomputed row by row.
  // Kept between calls (every element is written first): fresh pages would fault on first touch.
  thread_local std::vector<float> pre_activation_grad;
  float* gpre = kept(pre_activation_grad, B * N * R);
  parallel_for(rows, num_threads, [&](index_t row) {
    const index_t b = row / H, h = row % H;
    float* g = gpre + row * W * R;
    mix_conv_row<false>(s, x + b * x_sb, x_sn, h, w3t, b3, w5t, b5, g);
    for (index_t w = 0; w < W; ++w)
      mul_gelu_grad_inplace(grad_out + b * g_sb + (h * W + w) * g_sn, g + w * R, R);
  });

  // 2. Input gradient: conv of gpre with the flipped kernels, no bias.
  const std::vector<float> w3f = flipped(w3t, 3, c3), w5f = flipped(w5t, 5, c5);
  parallel_for(rows, num_threads, [&](index_t row) {
    const index_t b = row / H, h = row % H;
    const float* gb = gpre + b * N * R;
    float* gx = grad_x + row * W * R;
    conv_row<3, false>(gb, R, H, W, h, w3f.data(), nullptr, c3, gx, R);
    conv_row<5, false>(gb + c3, R, H, W, h, w5f.data(), nullptr, c5, gx + c3, R);
  });

  // 3. Weight and bias gradients: each fixed block of rows sums into its own partial buffer, then
  //    the blocks are added in order (deterministic for any thread count, no atomics).
  const index_t per_block = 9 * c3 + 25 * c5 + R;
  const index_t blocks = std::min<index_t>(rows, 64);
  std::vector<float> partial(static_cast<size_t>(blocks * per_block), 0.0f);
  parallel_for(blocks, num_threads, [&](index_t blk) {
    float* p3 = partial.data() + blk * per_block;
    float* p5 = p3 + 9 * c3;
    float* pb = p5 + 25 * c5;
    for (index_t row = blk * rows / blocks; row < (blk + 1) * rows / blocks; ++row) {
      const index_t b = row / H, h = row % H;
      const float* xb = x + b * x_sb;
      const float* g = gpre + row * W * R;
      weight_grad_row<3>(xb, x_sn, g, R, H, W, h, c3, p3, pb);
      weight_grad_row<5>(xb + c3, x_sn, g + c3, R, H, W, h, c5, p5, pb + c3);
    }
  });
  parallel_for(per_block, num_threads, [&](index_t i) {
    double total = 0.0;
    for (index_t blk = 0; blk < blocks; ++blk) total += partial[blk * per_block + i];
    float* dst = i < 9 * c3 ? grad_w3t + i
                 : i < 9 * c3 + 25 * c5 ? grad_w5t + (i - 9 * c3)
                 : i < 9 * c3 + 25 * c5 + c3 ? grad_b3 + (i - 9 * c3 - 25 * c5)
                                             : grad_b5 + (i - 9 * c3 - 25 * c5 - c3);
    *dst = static_cast<float>(total);
  });
}

}  // namespace hrvit
