// CPU kernels of attention-to-mask (SegViT's ATM cross-attention), fp32 (forward also bf16): raw pointers, sizes and strides in elements.
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

// With bf16_dots, bf16 q, k, v (data16), an even head dim and a CPU with AVX-512-BF16, the products run in bf16
// (fp32 accumulation, softmax and mask; probabilities rounded to bf16 for the product with v, as a bf16 reference
// rounds them) and out is bf16; otherwise q, k, v and out are fp32.
void attention_to_mask_forward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                               void* out, bool bf16_dots, float* mask, float* lse, int num_threads);

// Backward from q, k, v, out, lse and the gradients of out (grad_out) and of mask (grad_mask,
// contiguous (B, Q, L), or null when the mask is unused). Writes contiguous grad_q, grad_k, grad_v.
void attention_to_mask_backward(const MaskAttentionShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                TokenTensor out, const float* lse, TokenTensor grad_out,
                                const float* grad_mask, float* grad_q, float* grad_k, float* grad_v,
                                int num_threads);

}  // namespace hrvit
