// A read-only token tensor (B, N, C) with channel stride 1, as the attention kernels take their inputs:
// fp32, or bf16 for the kernels that say they read it.
#pragma once

#include "hrvit/bf16.h"
#include "hrvit/simd.h"

namespace hrvit {

// Element (b, n, c) at data[b * sb + n * sn + c] (or data16[...] for a bf16 tensor, data then null):
// slices such as the halves of a projection's output are passed without a copy.
struct TokenTensor {
  const float* data;
  index_t sb, sn;
  const bf16_t* data16 = nullptr;

  const void* address() const { return data ? static_cast<const void*>(data) : data16; }
};

}  // namespace hrvit
