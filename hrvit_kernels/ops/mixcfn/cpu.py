"""Calls into the C++ MixCFN kernels (hrvit_kernels._C). fp32 inside; the forward pass reads and writes bf16
tokens itself, other dtypes (and the backward pass's inputs) convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._cpu_common import fp32_rows, rows_as_read


def _taps_major(weight: torch.Tensor) -> torch.Tensor:
    """(c, 1, k, k) -> (k*k, c) contiguous fp32, so the kernel's inner loop runs over channels."""
    return weight.reshape(weight.shape[0], -1).t().float().contiguous()


def forward(x, H: int, W: int, weight3, bias3, weight5, bias5) -> torch.Tensor:
    B, _, R = x.shape
    xf = rows_as_read(x)
    bf16 = xf.dtype == torch.bfloat16
    w3t, w5t = _taps_major(weight3), _taps_major(weight5)
    b3, b5 = bias3.float().contiguous(), bias5.float().contiguous()
    out = _alloc.empty((B, H * W, R), xf.dtype)
    _ext.ext().mix_conv_gelu_forward(
        B, H, W, R, weight3.shape[0], xf.data_ptr(), xf.stride(0), xf.stride(1), bf16, w3t.data_ptr(),
        b3.data_ptr(), w5t.data_ptr(), b5.data_ptr(), out.data_ptr(), torch.get_num_threads())
    return out.to(x.dtype)


def backward(grad_out, x, H: int, W: int, weight3, bias3, weight5, bias5):
    B, _, R = x.shape
    split = weight3.shape[0]
    xf, gf = fp32_rows(x), fp32_rows(grad_out)
    w3t, w5t = _taps_major(weight3), _taps_major(weight5)
    b3, b5 = bias3.float().contiguous(), bias5.float().contiguous()
    grad_x = _alloc.empty((B, H * W, R))
    grad_w3t, grad_w5t = _alloc.empty(w3t.shape), _alloc.empty(w5t.shape)
    grad_b3, grad_b5 = _alloc.empty(b3.shape), _alloc.empty(b5.shape)
    _ext.ext().mix_conv_gelu_backward(
        B, H, W, R, split, xf.data_ptr(), xf.stride(0), xf.stride(1), gf.data_ptr(), gf.stride(0),
        gf.stride(1), w3t.data_ptr(), b3.data_ptr(), w5t.data_ptr(), b5.data_ptr(),
        grad_x.data_ptr(), grad_w3t.data_ptr(), grad_b3.data_ptr(), grad_w5t.data_ptr(),
        grad_b5.data_ptr(), torch.get_num_threads())
    return (grad_x.to(x.dtype), grad_w3t.t().contiguous().view(weight3.shape).to(weight3.dtype),
            grad_b3.to(bias3.dtype), grad_w5t.t().contiguous().view(weight5.shape).to(weight5.dtype),
            grad_b5.to(bias5.dtype))
