"""Keeping freed CPU memory mapped between forward passes (glibc's malloc).

PyTorch's CPU tensors come from malloc. With glibc's defaults a block above its mmap threshold (128 KiB, rising
with use to at most 32 MiB) is unmapped when freed, and free space at the top of the heap is handed back to the
kernel, so every forward pass faults its activations in again, one 4 KiB page at a time: about 47,000 page
faults per forward of hrvit_b1_segformer at 512 x 512, a quarter of its time on a 2-core machine. ONNX Runtime
and OpenVINO avoid this with arenas of their own; raising the two thresholds gives PyTorch the same.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# mallopt's parameter numbers (malloc.h) and the values set: blocks up to 1 GiB come from the heap, and freed
# memory is handed back only above 2 GiB free at its top (mallopt takes a C int).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


@functools.cache  # one outcome per process: the settings last, and the probe reads the interpreter's binary
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    Process-wide and lasting: later allocations reuse pages already faulted in, so repeated forward passes of
    the same shapes take no page faults (b1 at 512 x 512, batch 1: ~47,000 faults and ~400 ms -> ~100 and
    ~300 ms per forward on a 2-core machine). The cost: the process keeps its peak memory resident. The same as
    starting Python with ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647``.
    ``Segmenter`` (and so the ``segment`` / ``evaluate`` commands) calls it for CPU inference unless told not to.

    Returns True where the settings were applied (Linux with glibc), False elsewhere, where nothing changes.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 where it took the setting.
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD,
                                                                           TRIM_THRESHOLD_BYTES) == 1
