// CPU kernels of the cross-shaped (stripe) window attention: raw pointers, sizes and strides in elements.
// fp32 compute; the forward pass reads fp32 or bf16 inputs and writes an fp32 or bf16 output.
#pragma once

#include "hrvit/token_tensor.h"

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
// With bf16_dots, bf16 q, k, v and an even head dim, on a CPU with AVX-512-BF16: bf16 matrix products
// (fp32 accumulation and softmax, see attend_columns_bf16); else fp32 products.
void cswin_attention_forward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v, void* out,
                             bool out_bf16, bool bf16_dots, float* lse, int num_threads);

// Backward from q, k, v, out, lse and grad_out (any token strides, channel stride 1). Writes
// contiguous grad_q, grad_k, grad_v; when k is v (kv_aliased) grad_k must be null and both
// gradients are summed into grad_v.
void cswin_attention_backward(const StripeShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                              TokenTensor out, const float* lse, TokenTensor grad_out, bool kv_aliased,
                              float* grad_q, float* grad_k, float* grad_v, int num_threads);

}  // namespace hrvit
