"""Availability of the Triton backend: CUDA tensors, or CPU tensors under the Triton interpreter
(TRITON_INTERPRET=1, set before triton is imported; slow, for tests)."""
from __future__ import annotations

import importlib.util
import os

import torch

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def available(tensors) -> str | None:
    """None when the Triton kernels can run on these tensors, else the reason."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton)"
    t = tensors[0]
    if t.dtype not in TRITON_DTYPES:
        return f"dtype {t.dtype} is not supported (accepted: float32, float16, bfloat16)"
    if t.is_cuda or (t.device.type == "cpu" and interpreter_enabled()):
        return None
    return f"tensors are on {t.device}; the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU)"



def unit_channel_stride(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its channels (last dim) are adjacent, else a contiguous copy. The kernels read
    tokens through batch and token strides (slices of a projection need no copy) but channels with unit
    stride; channel-major, expanded (stride 0) and strided-slice layouts are copied, never misread."""
    return t if t.stride(-1) == 1 else t.contiguous()
