"""Calls into the C++ stripe-attention kernels (hrvit_kernels._C). fp32 inside; the forward pass reads and
writes bf16 itself (and multiplies in bf16 where the CPU can, see _cpu_common.BF16_DOT_PRODUCTS), other dtypes
(and the backward pass's inputs) convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc, _cpu_common
from hrvit_kernels.ops._cpu_common import fp32_rows, rows_as_read, token_arg


def forward(q, k, v, H: int, W: int, stripe_width: int, heads: int, head_dim: int, scale: float):
    """Returns (out (B, N, C) in q's dtype, lse (B, 2 * heads, N) fp32). ``v=None`` means k is v."""
    B, N, C = q.shape
    qf, kf = rows_as_read(q), rows_as_read(k)
    vf = kf if v is None else rows_as_read(v)
    out_bf16 = q.dtype == torch.bfloat16
    out = _alloc.empty((B, N, C), q.dtype if out_bf16 else torch.float32)
    lse = _alloc.empty((B, 2 * heads, N))
    _ext.ext().cswin_attention_forward(B, H, W, C, stripe_width, heads, head_dim, scale, token_arg(qf),
                                       token_arg(kf), token_arg(vf), out.data_ptr(), out_bf16,
                                       _cpu_common.BF16_DOT_PRODUCTS, lse.data_ptr(), torch.get_num_threads())
    return out.to(q.dtype), lse


def backward(grad_out, q, k, v, out, lse, H: int, W: int, stripe_width: int, heads: int, head_dim: int,
             scale: float):
    """Returns (grad_q, grad_k, grad_v); with ``v=None`` (k is v) grad_k holds the whole gradient of
    that tensor and grad_v is None."""
    B, N, C = q.shape
    qf, kf, of, gf = fp32_rows(q), fp32_rows(k), fp32_rows(out), fp32_rows(grad_out)
    lse = lse.contiguous()
    aliased = v is None
    vf = kf if aliased else fp32_rows(v)
    grad_q = _alloc.empty((B, N, C))
    grad_k = _alloc.empty((B, N, C))
    grad_v = None if aliased else _alloc.empty((B, N, C))
    # The kernel sums both gradients of an aliased k/v into its grad_v argument.
    _ext.ext().cswin_attention_backward(
        B, H, W, C, stripe_width, heads, head_dim, scale, token_arg(qf), token_arg(kf), token_arg(vf),
        token_arg(of), lse.data_ptr(), token_arg(gf), aliased, grad_q.data_ptr(),
        0 if aliased else grad_k.data_ptr(), (grad_k if aliased else grad_v).data_ptr(),
        torch.get_num_threads())
    cast = lambda t: None if t is None else t.to(q.dtype)  # noqa: E731
    return cast(grad_q), cast(grad_k), cast(grad_v)
