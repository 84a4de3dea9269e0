// The element-wise and depthwise steps of HLG's conv blocks in token layout, between matrix products and
// convolutions left to the BLAS and oneDNN: per-channel affine (an eval-mode BatchNorm) + GELU in place, the
// same with a residual added first, and the 3x3 depthwise conv + bias (+ GELU, in the depthwise MLP) in one pass.
#include "hrvit/kernels/hlg_conv_blocks.h"

#include "hrvit/depthwise_conv.h"
#include "hrvit/fast_math.h"
#include "hrvit/threading.h"

namespace hrvit {

void affine_gelu_inplace(index_t rows, index_t cols, float* data, const float* scale, const float* shift,
                         int num_threads) {
  parallel_for(rows, num_threads, [&](index_t i) {
    float* __restrict__ row = data + i * cols;
    index_t j = 0;
    if (scale == nullptr) {  // a bias only
      for (; j + kLanes <= cols; j += kLanes) store(row + j, gelu(load<vecf>(row + j) + load<vecf>(shift + j)));
      for (; j < cols; ++j) row[j] = gelu(row[j] + shift[j]);
      return;
    }
    for (; j + kLanes <= cols; j += kLanes)
      store(row + j, gelu(load<vecf>(row + j) * load<vecf>(scale + j) + load<vecf>(shift + j)));
    for (; j < cols; ++j) row[j] = gelu(row[j] * scale[j] + shift[j]);
  });
}

void residual_affine_gelu_inplace(index_t rows, index_t cols, float* data, const float* residual,
                                  const float* scale, const float* shift, int num_threads) {
  parallel_for(rows, num_threads, [&](index_t i) {
    float* __restrict__ row = data + i * cols;
    const float* __restrict__ res = residual + i * cols;
    index_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      store(row + j, gelu(load<vecf>(res + j) + load<vecf>(row + j) * load<vecf>(scale + j) + load<vecf>(shift + j)));
    for (; j < cols; ++j) row[j] = gelu(res[j] + row[j] * scale[j] + shift[j]);
  });
}

void depthwise_conv3_forward(const DepthwiseShape& s, bool gelu, const float* x, index_t x_sb, index_t x_sn,
                             const float* wt, const float* bias, float* out, int num_threads) {
  const index_t H = s.height, W = s.width, C = s.channels;
  const index_t out_h = (H - 1) / s.stride + 1, out_w = (W - 1) / s.stride + 1;
  parallel_for(s.batch * out_h, num_threads, [&](index_t row) {
    const index_t b = row / out_h, h = row % out_h;
    const float* src = x + b * x_sb;
    float* dst = out + row * out_w * C;
    if (s.stride == 1 && gelu)
      depthwise::conv_row<3, true, 1>(src, x_sn, H, W, h, wt, bias, C, dst, C);
    else if (s.stride == 1)
      depthwise::conv_row<3, false, 1>(src, x_sn, H, W, h, wt, bias, C, dst, C);
    else if (gelu)
      depthwise::conv_row<3, true, 2>(src, x_sn, H, W, h, wt, bias, C, dst, C);
    else
      depthwise::conv_row<3, false, 2>(src, x_sn, H, W, h, wt, bias, C, dst, C);
  });
}

}  // namespace hrvit
