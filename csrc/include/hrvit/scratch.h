// Scratch memory of the CPU kernels.
#pragma once

#include <vector>

#include "hrvit/simd.h"

namespace hrvit {

// buffer grown to at least n floats (contents as they were), for thread_local scratch that keeps its
// memory between calls: fresh pages from the OS fault on first touch, about 0.25 ms per MiB on the
// machine measured, which is more than some whole kernel calls take.
inline float* kept(std::vector<float>& buffer, index_t n) {
  if (static_cast<index_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

}  // namespace hrvit
