// CPU kernels of HLG's conv blocks and GELU MLPs (the depthwise MLP: pointwise -> GELU -> depthwise 3x3 -> GELU -> pointwise;
// the smoothing bottleneck) between their matrix products: raw pointers, sizes and strides in elements, fp32.
#pragma once

#include "hrvit/simd.h"

namespace hrvit {

// data[i][j] = GELU(data[i][j] * scale[j] + shift[j]) for a contiguous (rows, cols) matrix, in place; a null
// scale means 1 (a bias and GELU, as after a Linear layer).
void affine_gelu_inplace(index_t rows, index_t cols, float* data, const float* scale, const float* shift,
                         int num_threads);

// data[i][j] = GELU(residual[i][j] + data[i][j] * scale[j] + shift[j]), both contiguous (rows, cols).
void residual_affine_gelu_inplace(index_t rows, index_t cols, float* data, const float* residual,
                                  const float* scale, const float* shift, int num_threads);

// out = depthwise 3x3 conv of x with zero padding 1, the given stride (1 or 2), plus bias, then GELU if gelu, on
// row-major tokens: x is (B, H*W, C) with channel stride 1 and strides x_sb, x_sn; out is contiguous
// (B, Ho*Wo, C) with Ho = (H - 1) / stride + 1, Wo likewise; wt is the weight tap-major (9, C).
struct DepthwiseShape {
  index_t batch, height, width, channels, stride;
};
void depthwise_conv3_forward(const DepthwiseShape& s, bool gelu, const float* x, index_t x_sb, index_t x_sn,
                             const float* wt, const float* bias, float* out, int num_threads);

}  // namespace hrvit
