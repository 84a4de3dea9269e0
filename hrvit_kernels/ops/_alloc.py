"""Output allocation for kernels. With HRVIT_KERNELS_POISON=1 (set by the tests) outputs start as NaN,
so an element a kernel forgets to write shows up as a mismatch instead of passing by luck."""
from __future__ import annotations

import os

import torch


def empty(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    if os.environ.get("HRVIT_KERNELS_POISON") == "1":
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
