// Scratch memory of the CPU kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "hrvit/simd.h"

namespace hrvit {

// buffer grown to at least n floats (contents as they were), for thread_local scratch that keeps its
// memory between calls: fresh pages from the OS fault on first touch, about 0.25 ms per MiB on the
// machine measured, which is more than some whole kernel calls take.
inline float* kept(std::vector<float>& buffer, index_t n) {
  if (static_cast<index_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

// Asks Linux to back the whole 2 MiB pages inside [p, p + bytes) with transparent huge pages, for a large
// output before its first touch: one fault per 2 MiB instead of one per 4 KiB (filling a fresh 150 x 512 x 512
// fp32 tensor measured 31.6 -> 8.8 ms here, with THP set to "madvise"). Advice only: nothing changes where THP
// is off or the memory is not fresh.
inline void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace hrvit
