"""Output allocation for kernels. With HRVIT_KERNELS_POISON=1 (set by the tests) outputs start as NaN,
so an element a kernel forgets to write shows up as a mismatch instead of passing by luck. Large CPU outputs
are backed by huge pages where Linux allows (their first touch was a large share of the SegFormer head's
final resize: about 0.2 ms per MiB in 4 KiB page faults)."""
from __future__ import annotations

import os

import torch

from hrvit_kernels import _ext

HUGE_PAGE_MIN_BYTES = 4 << 20  # two huge pages and more


def empty(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    if os.environ.get("HRVIT_KERNELS_POISON") == "1":
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    out = torch.empty(shape, dtype=dtype, device=device)
    if out.device.type == "cpu" and out.nbytes >= HUGE_PAGE_MIN_BYTES and _ext.HAS_EXT:
        _ext.ext().advise_huge_pages(out.data_ptr(), out.nbytes)
    return out
