// A read-only fp32 token tensor (B, N, C) with channel stride 1, as the attention kernels take their inputs.
#pragma once

#include "hrvit/simd.h"

namespace hrvit {

// Element (b, n, c) at data[b * sb + n * sn + c]: slices such as the halves of a projection's output
// are passed without a copy.
struct TokenTensor {
  const float* data;
  index_t sb, sn;
};

}  // namespace hrvit
