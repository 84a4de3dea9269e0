"""Calls into the C++ attention-to-mask kernels (hrvit_kernels._C). fp32 inside, but for the forward's bf16
products on bf16 inputs; other dtypes convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._cpu_common import bf16_dot_products, fp32_rows, rows_as_read, token_arg


def forward(q, k, v, num_heads: int, scale: float):
    """Returns (out (B, Q, C), mask_logits (B, Q, L)) in q's dtype and lse (B, heads, Q) fp32. On bf16 q, k, v
    with an even head dim the products run in bf16 where the CPU has AVX-512-BF16 (bf16_dot_products())."""
    B, Q, C = q.shape
    L = k.shape[1]
    bf16 = (all(t.dtype == torch.bfloat16 for t in (q, k, v)) and (C // num_heads) % 2 == 0
            and bf16_dot_products())
    rows = rows_as_read if bf16 else fp32_rows
    qr, kr, vr = rows(q), rows(k), rows(v)
    out = _alloc.empty((B, Q, C), torch.bfloat16 if bf16 else torch.float32)
    mask, lse = _alloc.empty((B, Q, L)), _alloc.empty((B, num_heads, Q))
    _ext.ext().attention_to_mask_forward(B, Q, L, C, num_heads, scale, token_arg(qr), token_arg(kr),
                                         token_arg(vr), out.data_ptr(), bf16, mask.data_ptr(), lse.data_ptr(),
                                         torch.get_num_threads())
    return out.to(q.dtype), mask.to(q.dtype), lse


def backward(grad_out, grad_mask, q, k, v, out, lse, num_heads: int, scale: float):
    """Returns (grad_q, grad_k, grad_v). ``grad_mask=None`` means the mask logits were not used."""
    B, Q, C = q.shape
    L = k.shape[1]
    qf, kf, vf, of = fp32_rows(q), fp32_rows(k), fp32_rows(v), fp32_rows(out)
    gf = fp32_rows(grad_out) if grad_out is not None else torch.zeros((B, Q, C))
    gm = grad_mask.float().contiguous() if grad_mask is not None else None
    lse = lse.contiguous()
    grad_q, grad_k, grad_v = _alloc.empty((B, Q, C)), _alloc.empty((B, L, C)), _alloc.empty((B, L, C))
    _ext.ext().attention_to_mask_backward(
        B, Q, L, C, num_heads, scale, token_arg(qf), token_arg(kf), token_arg(vf), token_arg(of),
        lse.data_ptr(), token_arg(gf), 0 if gm is None else gm.data_ptr(), grad_q.data_ptr(),
        grad_k.data_ptr(), grad_v.data_ptr(), torch.get_num_threads())
    return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype)
