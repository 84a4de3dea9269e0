"""Helpers shared by the ops' C++ bindings: availability, fp32 conversion at the boundary, token views."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext

CPP_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def available(tensors) -> str | None:
    """None when the C++ kernels can run on these tensors, else the reason."""
    if not _ext.HAS_EXT:
        return _ext.REBUILD_HINT
    if tensors[0].device.type != "cpu":
        return f"tensors are on {tensors[0].device}, this backend needs CPU tensors"
    if tensors[0].dtype not in CPP_DTYPES:
        return f"dtype {tensors[0].dtype} is not supported (accepted: float32, float16, bfloat16)"
    return None


def fp32_rows(t: torch.Tensor) -> torch.Tensor:
    """fp32 with unit channel stride: the kernels read tokens through batch and token strides, so
    slices such as the halves of a projection's output are passed without a copy."""
    t = t.float()
    return t if t.stride(-1) == 1 else t.contiguous()


def token_arg(t: torch.Tensor) -> tuple[int, int, int]:
    """(address, batch stride, token stride) of a (B, N, C) fp32 tensor with unit channel stride."""
    return t.data_ptr(), t.stride(0), t.stride(1)
