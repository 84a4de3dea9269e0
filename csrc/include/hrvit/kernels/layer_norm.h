// CPU kernel of LayerNorm over the last dimension, with a residual sum before it (a transformer block's
// "x = x + delta; y = LayerNorm(x)") and the output in the dtype of the matrix product that reads it:
// one pass over the rows instead of an add, a norm and an autocast conversion.
#pragma once

#include "hrvit/simd.h"

namespace hrvit {

// A row-major (rows, cols) operand in fp32 or bf16 with unit column stride and a row stride in elements.
struct RowsArg {
  const void* data;
  bool bf16;
  index_t row_stride;
};
struct RowsOut {
  void* data;
  bool bf16;  // contiguous (rows, cols)
};

// sum = x + residual (when residual.data is non-null; stored when sum.data is non-null), then
// out = (sum - mean) / sqrt(var + eps) * weight + bias per row, biased variance, fp32 inside.
void add_layer_norm_forward(index_t rows, index_t cols, RowsArg x, RowsArg residual, const float* weight,
                            const float* bias, float eps, RowsOut sum, RowsOut out, int num_threads);

}  // namespace hrvit
