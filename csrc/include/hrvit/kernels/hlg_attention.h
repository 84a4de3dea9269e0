// CPU kernels of HLG's local window attention and global window-token attention, fp32: raw pointers, sizes
// and strides in elements.
#pragma once

#include "hrvit/token_tensor.h"

namespace hrvit {

// Local attention on row-major tokens (B, H*W, C) in 7 x 7 windows of the map padded to 7 * ceil(H/7) x
// 7 * ceil(W/7): contiguous window (a, b) holds pixels (7a + i, 7b + j), dilated window (a, b) pixels
// (n_h i + a, n_w j + b), n_h = ceil(H/7), n_w = ceil(W/7), token order 7i + j. The query is also the key;
// only a window's real pixels take part. bias: (heads, 49, 49) contiguous, added to head h's logit of
// window tokens (i, j). Heads have C / heads channels. Outputs are contiguous: out (B, H*W, C) and lse
// (B, heads, H*W), each query's log-sum-exp in base 2 (see cswin_attention.h).
struct HlgLocalShape {
  index_t batch, height, width, channels, heads;
  bool dilated;
  float scale;
};
void hlg_local_attention_forward(const HlgLocalShape& s, TokenTensor q, TokenTensor v, const float* bias, float* out,
                                 float* lse, int num_threads);
// Backward: contiguous grad_q, grad_v (B, H*W, C) and grad_bias (heads, 49, 49), all overwritten.
void hlg_local_attention_backward(const HlgLocalShape& s, TokenTensor q, TokenTensor v, TokenTensor out,
                                  const float* lse, TokenTensor grad_out, const float* bias, float* grad_q,
                                  float* grad_v, float* grad_bias, int num_threads);

// Global attention: every pixel's query (B, H*W, C) against M keys and values (B, M, C), key m at cell
// (u, v) = (m // gw, m % gw) of a gh x gw key grid; head h adds table[h][(y - u + gh - 1) * (2gw - 1) + (x - v +
// gw - 1)] (table: heads x table_size, contiguous, every index in range) to the logit of query (y, x) and key m.
// With the key grid the map itself (gh, gw = H, W) this is the bias of the offset between two pixels.
// Outputs as for local attention.
struct HlgGlobalShape {
  index_t batch, height, width, keys, channels, heads, grid_height, grid_width, table_size;
  float scale;
};
void hlg_global_attention_forward(const HlgGlobalShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                  const float* table, float* out, float* lse, int num_threads);
// Backward: contiguous grad_q (B, H*W, C), grad_k, grad_v (B, M, C) and grad_table, all overwritten.
void hlg_global_attention_backward(const HlgGlobalShape& s, TokenTensor q, TokenTensor k, TokenTensor v,
                                   TokenTensor out, const float* lse, TokenTensor grad_out, const float* table,
                                   float* grad_q, float* grad_k, float* grad_v, float* grad_table, int num_threads);

}  // namespace hrvit
