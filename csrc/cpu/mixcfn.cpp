// MixCFN mixed-scale depthwise convolution (3x3 on the first `split` channels, 5x5 on the rest,
// zero padding, bias) + exact GELU, in token layout, forward and backward. fp32.
#include <algorithm>
#include <vector>

#include "hrvit/kernels.h"

namespace hrvit {
namespace {

// Pre-activation of output row h of one image: pre[w * R + r]. xb points at the image's first token.
void conv_row(const MixConvShape& s, const float* __restrict__ xb, index_t x_sn, index_t h,
              const float* __restrict__ w3t, const float* __restrict__ b3,
              const float* __restrict__ w5t, const float* __restrict__ b5, float* __restrict__ pre) {
  const index_t H = s.height, W = s.width, R = s.channels, c3 = s.split, c5 = R - c3;
  for (index_t w = 0; w < W; ++w) {
    float* __restrict__ acc = pre + w * R;
    std::copy(b3, b3 + c3, acc);
    std::copy(b5, b5 + c5, acc + c3);
    for (index_t dy = -2; dy <= 2; ++dy) {
      const index_t yy = h + dy;
      if (yy < 0 || yy >= H) continue;
      for (index_t dx = -2; dx <= 2; ++dx) {
        const index_t xx = w + dx;
        if (xx < 0 || xx >= W) continue;
        const float* __restrict__ src = xb + (yy * W + xx) * x_sn;
        if (dy >= -1 && dy <= 1 && dx >= -1 && dx <= 1) {
          const float* __restrict__ k3 = w3t + ((dy + 1) * 3 + (dx + 1)) * c3;
          for (index_t r = 0; r < c3; ++r) acc[r] += k3[r] * src[r];
        }
        const float* __restrict__ k5 = w5t + ((dy + 2) * 5 + (dx + 2)) * c5;
        float* __restrict__ acc5 = acc + c3;
        const float* __restrict__ src5 = src + c3;
        for (index_t r = 0; r < c5; ++r) acc5[r] += k5[r] * src5[r];
      }
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
    float* o = out + row * W * R;
    conv_row(s, x + b * x_sb, x_sn, h, w3t, b3, w5t, b5, o);
    for (index_t i = 0; i < W * R; ++i) o[i] = gelu(o[i]);
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
  std::vector<float> gpre(static_cast<size_t>(B * N * R));
  parallel_for(rows, num_threads, [&](index_t row) {
    const index_t b = row / H, h = row % H;
    float* g = gpre.data() + row * W * R;
    conv_row(s, x + b * x_sb, x_sn, h, w3t, b3, w5t, b5, g);
    for (index_t w = 0; w < W; ++w) {
      const float* go = grad_out + b * g_sb + (h * W + w) * g_sn;
      float* gw = g + w * R;
      for (index_t r = 0; r < R; ++r) gw[r] = go[r] * gelu_grad(gw[r]);
    }
  });

  // 2. Input gradient: the transposed (flipped) depthwise conv of gpre, gathered per input pixel.
  parallel_for(rows, num_threads, [&](index_t row) {
    const index_t b = row / H, h = row % H;
    const float* gb = gpre.data() + b * N * R;
    for (index_t w = 0; w < W; ++w) {
      float* __restrict__ gx = grad_x + (row * W + w) * R;
      std::fill(gx, gx + R, 0.0f);
      for (index_t dy = -2; dy <= 2; ++dy) {
        const index_t oy = h - dy;
        if (oy < 0 || oy >= H) continue;
        for (index_t dx = -2; dx <= 2; ++dx) {
          const index_t ox = w - dx;
          if (ox < 0 || ox >= W) continue;
          const float* __restrict__ g = gb + (oy * W + ox) * R;
          if (dy >= -1 && dy <= 1 && dx >= -1 && dx <= 1) {
            const float* __restrict__ k3 = w3t + ((dy + 1) * 3 + (dx + 1)) * c3;
            for (index_t r = 0; r < c3; ++r) gx[r] += k3[r] * g[r];
          }
          const float* __restrict__ k5 = w5t + ((dy + 2) * 5 + (dx + 2)) * c5;
          for (index_t r = 0; r < c5; ++r) gx[c3 + r] += k5[r] * g[c3 + r];
        }
      }
    }
  });

  // 3. Weight and bias gradients: each fixed block of rows sums into its own partial buffer, then
  //    the blocks are added in order (deterministic, no atomics).
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
      for (index_t w = 0; w < W; ++w) {
        const float* __restrict__ g = gpre.data() + (row * W + w) * R;
        for (index_t r = 0; r < R; ++r) pb[r] += g[r];
        for (index_t dy = -2; dy <= 2; ++dy) {
          const index_t yy = h + dy;
          if (yy < 0 || yy >= H) continue;
          for (index_t dx = -2; dx <= 2; ++dx) {
            const index_t xx = w + dx;
            if (xx < 0 || xx >= W) continue;
            const float* __restrict__ src = xb + (yy * W + xx) * x_sn;
            if (dy >= -1 && dy <= 1 && dx >= -1 && dx <= 1) {
              float* __restrict__ k3 = p3 + ((dy + 1) * 3 + (dx + 1)) * c3;
              for (index_t r = 0; r < c3; ++r) k3[r] += g[r] * src[r];
            }
            float* __restrict__ k5 = p5 + ((dy + 2) * 5 + (dx + 2)) * c5;
            for (index_t r = 0; r < c5; ++r) k5[r] += g[c3 + r] * src[c3 + r];
          }
        }
      }
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
