// The depthwise MLP's element-wise and depthwise steps in token layout (its pointwise convolutions are
// matrix products, left to the BLAS): per-channel affine + GELU in place after the first product, then the 3x3
// depthwise conv + bias + GELU in one pass.
#include "hrvit/kernels/depthwise_mlp.h"

#include "hrvit/depthwise_conv.h"
#include "hrvit/fast_math.h"
#include "hrvit/threading.h"

namespace hrvit {

void affine_gelu_inplace(index_t rows, index_t cols, float* data, const float* scale, const float* shift,
                         int num_threads) {
  parallel_for(rows, num_threads, [&](index_t i) {
    float* __restrict__ row = data + i * cols;
    index_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      store(row + j, gelu(load<vecf>(row + j) * load<vecf>(scale + j) + load<vecf>(shift + j)));
    for (; j < cols; ++j) row[j] = gelu(row[j] * scale[j] + shift[j]);
  });
}

void depthwise_conv3_gelu_forward(const DepthwiseShape& s, const float* x, index_t x_sb, index_t x_sn,
                                  const float* wt, const float* bias, float* out, int num_threads) {
  const index_t H = s.height, W = s.width, C = s.channels;
  const index_t out_h = (H - 1) / s.stride + 1, out_w = (W - 1) / s.stride + 1;
  parallel_for(s.batch * out_h, num_threads, [&](index_t row) {
    const index_t b = row / out_h, h = row % out_h;
    float* dst = out + row * out_w * C;
    if (s.stride == 1)
      depthwise::conv_row<3, true, 1>(x + b * x_sb, x_sn, H, W, h, wt, bias, C, dst, C);
    else
      depthwise::conv_row<3, true, 2>(x + b * x_sb, x_sn, H, W, h, wt, bias, C, dst, C);
  });
}

}  // namespace hrvit
