"""Output allocation for kernels, and per-thread kept buffers for intermediates (``scratch``). With
HRVIT_KERNELS_POISON=1 (set by the tests) both start as NaN, so an element a kernel forgets to write shows up as
a mismatch instead of passing by luck."""
from __future__ import annotations

import math
import os
import threading

import torch


def empty(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    if os.environ.get("HRVIT_KERNELS_POISON") == "1":
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


_kept = threading.local()
KEPT_LIMIT_BYTES = 256 << 20  # larger intermediates (whole high-resolution images) are not kept


def scratch(name: str, shape) -> torch.Tensor:
    """A CPU fp32 buffer for an intermediate that never leaves the op, kept per thread between calls (grown
    to the largest size asked for ``name``, up to KEPT_LIMIT_BYTES; larger ones are fresh): a fresh large
    tensor's pages fault on first touch, which cost a third of a 12544 x 96 x 384 matrix product here.
    Overwritten by the next call in this thread."""
    numel = math.prod(shape)
    if 4 * numel > KEPT_LIMIT_BYTES:
        return empty(shape)
    buffers = _kept.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor, which later calls outside inference mode may write
            buffer = buffers[name] = torch.empty(numel)
    view = buffer[:numel].view(shape)
    if os.environ.get("HRVIT_KERNELS_POISON") == "1":
        view.fill_(float("nan"))
    return view
