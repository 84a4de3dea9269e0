"""Output allocation for kernels. With HRVIT_KERNELS_POISON=1 (set by the tests) outputs start as NaN,
so an element a kernel forgets to write shows up as a mismatch instead of passing by luck.

Large CPU outputs are backed by transparent huge pages where Linux gives them on request (THP mode
"madvise", a common default): the first touch of a fresh output otherwise costs one page fault per
4 KiB, a large share of a memory-bound kernel's time (measured on a 2-core Xeon: allocating and
writing 157 MB takes 35 ms with 4 KiB pages, 19 ms advised; 50 MB, 11 and 4 ms)."""
from __future__ import annotations

import ctypes
import os
import sys

import torch

# Only allocations glibc always serves with a fresh mmap (its largest mmap threshold, 32 MiB), so the
# advice never touches the heap and goes away with the tensor.
HUGE_PAGE_MIN_BYTES = 32 << 20
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _advise_huge_pages(t: torch.Tensor) -> None:
    start = -(-t.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    end = (t.data_ptr() + t.numel() * t.element_size()) // _HUGE_PAGE * _HUGE_PAGE
    if end > start:  # a hint: failure (e.g. THP disabled) changes nothing
        _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)


def empty(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype, device=device)
    if _libc is not None and t.device.type == "cpu" and t.numel() * t.element_size() >= HUGE_PAGE_MIN_BYTES:
        _advise_huge_pages(t)
    if os.environ.get("HRVIT_KERNELS_POISON") == "1":
        t.fill_(float("nan"))
    return t
