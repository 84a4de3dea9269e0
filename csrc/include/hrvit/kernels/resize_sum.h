// CPU kernels of the sum of bilinear resizes: raw pointers, sizes and strides in elements. The forward pass
// reads and writes fp32 or bf16 (computing in fp32); the backward pass is fp32.
#pragma once

#include "hrvit/simd.h"

namespace hrvit {

// Sum of bilinear resizes with half-pixel centres (F.interpolate(mode="bilinear",
// align_corners=False)): out[p] = sum over maps m of resize(m.data[p], (height, width)) for every
// plane p (a batch-channel pair). Each map holds `planes` contiguous (m.height, m.width) planes; out
// is contiguous (planes, height, width) and is fully written (the first map sets, the others add).
// Elements are fp32, or bf16 where the flag says so.
struct ResizeSource {
  const void* data;
  bool bf16;
  index_t height, width;
};

void resize_sum_forward(index_t planes, index_t height, index_t width, const ResizeSource* maps,
                        int num_maps, void* out, bool out_bf16, int num_threads);

// The gradient of one map resized to (height, width): grad_map (planes contiguous (map_height,
// map_width) planes, fully written) from grad_out (contiguous (planes, height, width)).
void resize_backward(index_t planes, index_t height, index_t width, const float* grad_out,
                     index_t map_height, index_t map_width, float* grad_map, int num_threads);

}  // namespace hrvit
