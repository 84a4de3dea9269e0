"""Calls into the C++ resize-sum kernel (hrvit_kernels._C). fp32 inside; the forward pass reads and writes
bf16 itself (a bf16 model's logits need no conversion passes), other dtypes convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc


def forward(maps: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    B, C = maps[0].shape[:2]
    dtype = maps[0].dtype if maps[0].dtype in (torch.float32, torch.bfloat16) else torch.float32
    planes = [m.to(dtype).contiguous() for m in maps]  # the kernel reads contiguous NCHW planes
    out = _alloc.empty((B, C, height, width), dtype)
    bf16 = dtype == torch.bfloat16
    _ext.ext().resize_sum_forward(B * C, height, width,
                                  [(p.data_ptr(), bf16, p.shape[2], p.shape[3]) for p in planes],
                                  out.data_ptr(), bf16, torch.get_num_threads())
    return out.to(maps[0].dtype)


def backward(grad_out: torch.Tensor, map_height: int, map_width: int) -> torch.Tensor:
    """The gradient of one map resized to grad_out's size."""
    B, C, height, width = grad_out.shape
    g = grad_out.float().contiguous()
    grad_map = _alloc.empty((B, C, map_height, map_width))
    _ext.ext().resize_backward(B * C, height, width, g.data_ptr(), map_height, map_width,
                               grad_map.data_ptr(), torch.get_num_threads())
    return grad_map.to(grad_out.dtype)
