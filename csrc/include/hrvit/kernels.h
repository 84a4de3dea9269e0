// Declarations of the CPU kernels (fp32). Pointers are raw; sizes and strides are in elements.
#pragma once

#include "hrvit/common.h"

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

// Backward of the above: grad_x (contiguous (B, H*W, R)) and the weight and bias gradients in the
// tap-major layout of w3t / w5t. Weight gradients are reduced over fixed row blocks in a fixed
// order, so results do not depend on the thread count.
void mix_conv_gelu_backward(const MixConvShape& s, const float* x, index_t x_sb, index_t x_sn,
                            const float* grad_out, index_t g_sb, index_t g_sn, const float* w3t,
                            const float* b3, const float* w5t, const float* b5, float* grad_x,
                            float* grad_w3t, float* grad_b3, float* grad_w5t, float* grad_b5,
                            int num_threads);

}  // namespace hrvit

namespace hrvit {

// Cross-shaped (stripe) window attention on row-major tokens (B, H*W, C), fp32. Channels [0, C/2)
// attend within horizontal stripes of `stripe_width` rows, [C/2, C) within vertical stripes of
// `stripe_width` columns (the last stripe shorter); each half has `heads` heads of `head_dim`.
// Inputs have channel stride 1 and the given batch / token strides; k may equal v (the same pointer
// and strides), then it is read once. Outputs are contiguous: out (B, H*W, C), lse (B, 2*heads, H*W)
// (saved for the backward pass: each query's log-sum-exp in base 2, log2 sum 2^(scaled logit * log2 e),
// which the backward matches bit for bit by computing the logits as the forward did).
struct StripeShape {
  index_t batch, height, width, channels, stripe_width, heads, head_dim;
  float scale;
};
struct TokenTensor {
  const float* data;
  index_t sb, sn;
};

void cswin_attention_forward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                             float* out, float* lse, int num_threads);

// Backward from q, k, v, out, lse and grad_out (any token strides, channel stride 1). Writes
// contiguous grad_q, grad_k, grad_v; when k is v (kv_aliased) grad_k must be null and both
// gradients are summed into grad_v.
void cswin_attention_backward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                              TokenTensor out, const float* lse, TokenTensor grad_out, bool kv_aliased,
                              float* grad_q, float* grad_k, float* grad_v, int num_threads);

}  // namespace hrvit

namespace hrvit {

// Attention-to-mask (SegViT's ATM cross-attention), fp32: q (B, Q, C), k and v (B, L, C) with channel
// stride 1; `heads` heads of C / heads channels. Writes contiguous out (B, Q, C) (per-head softmax
// attention, heads concatenated), mask (B, Q, L) (the mean over heads of the scaled logits) and
// lse (B, heads, Q) (base 2, as for the stripe attention).
struct MaskAttentionShape {
  index_t batch, queries, keys, channels, heads;
  float scale;
};

void attention_to_mask_forward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                               float* out, float* mask, float* lse, int num_threads);

// Backward from q, k, v, out, lse and the gradients of out (grad_out) and of mask (grad_mask,
// contiguous (B, Q, L), or null when the mask is unused). Writes contiguous grad_q, grad_k, grad_v.
void attention_to_mask_backward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                TokenTensor out, const float* lse, TokenTensor grad_out,
                                const float* grad_mask, float* grad_q, float* grad_k, float* grad_v,
                                int num_threads);

}  // namespace hrvit

namespace hrvit {

// Sum of bilinear resizes with half-pixel centres (F.interpolate(mode="bilinear",
// align_corners=False)): out[p] = sum over maps m of resize(m.data[p], (height, width)) for every
// plane p (a batch-channel pair). Each map holds `planes` contiguous (m.height, m.width) planes; out
// is contiguous (planes, height, width) and is fully written (the first map sets, the others add).
struct ResizeSource {
  const float* data;
  index_t height, width;
};

void resize_sum_forward(index_t planes, index_t height, index_t width, const ResizeSource* maps,
                        int num_maps, float* out, int num_threads);

// The gradient of one map resized to (height, width): grad_map (planes contiguous (map_height,
// map_width) planes, fully written) from grad_out (contiguous (planes, height, width)).
void resize_backward(index_t planes, index_t height, index_t width, const float* grad_out,
                     index_t map_height, index_t map_width, float* grad_map, int num_threads);

}  // namespace hrvit
