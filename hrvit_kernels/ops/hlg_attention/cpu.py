"""Calls into the C++ HLG attention kernels (hrvit_kernels._C). fp32 inside; other dtypes convert here."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext
from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._cpu_common import fp32_rows, token_arg


def local_forward(q, v, H: int, W: int, dilated: bool, bias, scale: float):
    """Returns (out (B, N, C) in q's dtype, lse (B, heads, N) fp32)."""
    B, N, C = q.shape
    heads = bias.shape[0]
    qf, vf, bf = fp32_rows(q), fp32_rows(v), bias.float().contiguous()
    out, lse = _alloc.empty((B, N, C)), _alloc.empty((B, heads, N))
    _ext.ext().hlg_local_attention_forward(B, H, W, C, heads, dilated, scale, token_arg(qf), token_arg(vf),
                                           bf.data_ptr(), out.data_ptr(), lse.data_ptr(), torch.get_num_threads())
    return out.to(q.dtype), lse


def local_backward(grad_out, q, v, out, lse, H: int, W: int, dilated: bool, bias, scale: float):
    """Returns (grad_q, grad_v, grad_bias)."""
    B, N, C = q.shape
    heads = bias.shape[0]
    qf, vf, of, gf = fp32_rows(q), fp32_rows(v), fp32_rows(out), fp32_rows(grad_out)
    bf, lse = bias.float().contiguous(), lse.contiguous()
    grad_q, grad_v, grad_bias = _alloc.empty((B, N, C)), _alloc.empty((B, N, C)), _alloc.empty(tuple(bias.shape))
    _ext.ext().hlg_local_attention_backward(
        B, H, W, C, heads, dilated, scale, token_arg(qf), token_arg(vf), token_arg(of), lse.data_ptr(),
        token_arg(gf), bf.data_ptr(), grad_q.data_ptr(), grad_v.data_ptr(), grad_bias.data_ptr(),
        torch.get_num_threads())
    return grad_q.to(q.dtype), grad_v.to(v.dtype), grad_bias.to(bias.dtype)


def global_forward(q, k, v, H: int, W: int, grid_h: int, grid_w: int, table, scale: float):
    """Returns (out (B, N, C) in q's dtype, lse (B, heads, N) fp32)."""
    B, N, C = q.shape
    heads = table.shape[0]
    qf, kf, vf, tf = fp32_rows(q), fp32_rows(k), fp32_rows(v), table.float().contiguous()
    out, lse = _alloc.empty((B, N, C)), _alloc.empty((B, heads, N))
    _ext.ext().hlg_global_attention_forward(B, H, W, k.shape[1], C, heads, grid_h, grid_w, tf.shape[1], scale,
                                            token_arg(qf), token_arg(kf),
                                            token_arg(vf), tf.data_ptr(), out.data_ptr(), lse.data_ptr(),
                                            torch.get_num_threads())
    return out.to(q.dtype), lse


def global_backward(grad_out, q, k, v, out, lse, H: int, W: int, grid_h: int, grid_w: int, table, scale: float):
    """Returns (grad_q, grad_k, grad_v, grad_table)."""
    B, N, C = q.shape
    M, heads = k.shape[1], table.shape[0]
    qf, kf, vf, of, gf = fp32_rows(q), fp32_rows(k), fp32_rows(v), fp32_rows(out), fp32_rows(grad_out)
    tf, lse = table.float().contiguous(), lse.contiguous()
    grad_q, grad_k, grad_v = _alloc.empty((B, N, C)), _alloc.empty((B, M, C)), _alloc.empty((B, M, C))
    grad_table = _alloc.empty(tuple(table.shape))
    _ext.ext().hlg_global_attention_backward(
        B, H, W, M, C, heads, grid_h, grid_w, tf.shape[1], scale, token_arg(qf), token_arg(kf), token_arg(vf), token_arg(of), lse.data_ptr(),
        token_arg(gf), tf.data_ptr(), grad_q.data_ptr(), grad_k.data_ptr(), grad_v.data_ptr(),
        grad_table.data_ptr(), torch.get_num_threads())
    return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), grad_table.to(table.dtype)
