// CPU kernels of MixCFN (mixed-scale depthwise convolution + GELU): raw pointers, sizes and strides in elements.
#pragma once

#include "hrvit/bf16.h"
#include "hrvit/simd.h"

namespace hrvit {

// MixCFN: out = GELU(concat(dwconv3x3(x[..., :split]), dwconv5x5(x[..., split:]))) on row-major
// tokens. x is (B, H*W, R) with channel stride 1 and strides x_sb, x_sn; out is contiguous (B, H*W, R).
// w3t is (9, split) and w5t is (25, R - split): the depthwise weights transposed to tap-major, so
// the inner loop runs over contiguous channels.
struct MixConvShape {
  index_t batch, height, width, channels, split;
};

void mix_conv_gelu_forward(const MixConvShape& s, const float* x, index_t x_sb, index_t x_sn,
                           const float* w3t, const float* b3, const float* w5t, const float* b5,
                           float* out, int num_threads);
// The same on bf16 tokens (x and out bf16; weights and biases fp32, the conv and GELU computed in fp32).
void mix_conv_gelu_forward_bf16(const MixConvShape& s, const bf16_t* x, index_t x_sb, index_t x_sn,
                                const float* w3t, const float* b3, const float* w5t, const float* b5,
                                bf16_t* out, int num_threads);

// Backward of the above: grad_x (contiguous (B, H*W, R)) and the weight and bias gradients in the
// tap-major layout of w3t / w5t. Weight gradients are reduced over fixed row blocks in a fixed
// order, so results do not depend on the thread count.
void mix_conv_gelu_backward(const MixConvShape& s, const float* x, index_t x_sb, index_t x_sn,
                            const float* grad_out, index_t g_sb, index_t g_sn, const float* w3t,
                            const float* b3, const float* w5t, const float* b5, float* grad_x,
                            float* grad_w3t, float* grad_b3, float* grad_w5t, float* grad_b5,
                            int num_threads);

}  // namespace hrvit
