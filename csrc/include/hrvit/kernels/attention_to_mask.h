// CPU kernels of attention-to-mask (SegViT's ATM cross-attention), fp32: raw pointers, sizes and strides in elements.
#pragma once

#include "hrvit/token_tensor.h"

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
