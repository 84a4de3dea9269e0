"""Triton kernels of attention-to-mask, forward and backward (the only module of this op that imports
triton; imported lazily on first use).

Forward program (query block, b * heads + head): one pass over key tiles computes the online softmax
output and adds this head's scaled logits / heads into the fp32 mask logits with atomic adds, so no
per-head logits are stored (the summation order over heads, and so the last bit, may vary between
runs). Backward: flash-style from the saved log-sum-exp; the mask gradient / heads joins each head's
logit gradient. Inputs are read through strides; offsets are int64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._triton_common import unit_channel_stride
from hrvit_kernels.ops._triton_attention import (load_head_rows, load_saved_stats, online_softmax_step,
                                                 softmax_grad_tile)


@triton.jit
def _atm_fwd(Q, K, V, Out, Mask, Lse, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn,
             Lq, Lk, C, heads, scale, inv_heads,
             HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < Lq
    q = load_head_rows(Q, b * s_qb, offs_m[:, None].to(tl.int64), s_qn, c0, offs_d,
                       mask_m[:, None] & mask_d[None, :])
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < Lk
        kv_mask = mask_n[:, None] & mask_d[None, :]
        rows = offs_n[:, None].to(tl.int64)
        k = load_head_rows(K, b * s_kb, rows, s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b * s_vb, rows, s_vn, c0, offs_d, kv_mask)
        qk = tl.dot(q, tl.trans(k))
        tl.atomic_add(Mask + (b * Lq + offs_m[:, None].to(tl.int64)) * Lk + offs_n[None, :], qk * scale * inv_heads,
                      mask=mask_m[:, None] & mask_n[None, :])
        # Base-2 logits rounded exactly as the backward recomputes them (one multiply by scale * log2 e):
        # with sharp logits an extra rounding here left the recomputed probabilities off by an ulp of the
        # logits, and the value gradient 6x further from float64 than the reference's.
        s = tl.where(mask_n[None, :], qk * (scale * 1.4426950408889634), float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, v, m_i, l_i, acc)
    acc = acc / l_i[:, None]
    tl.store(Out + (b * Lq + offs_m[:, None].to(tl.int64)) * C + c0 + offs_d[None, :],
             acc.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
    tl.store(Lse + (b * heads + head) * Lq + offs_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _atm_bwd_dkdv(Q, K, V, dO, GMask, Lse, Delta, dK, dV, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                  Lq, Lk, C, heads, scale, inv_heads,
                  HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  HAS_GMASK: tl.constexpr):
    pid_n = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < Lk
    kv_mask = mask_n[:, None] & mask_d[None, :]
    rows_n = offs_n[:, None].to(tl.int64)
    k = load_head_rows(K, b * s_kb, rows_n, s_kn, c0, offs_d, kv_mask)
    v = load_head_rows(V, b * s_vb, rows_n, s_vn, c0, offs_d, kv_mask)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    stats = (b * heads + head) * Lq
    for start_m in range(0, Lq, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < Lq
        rows_m = offs_m[:, None].to(tl.int64)
        q_mask = mask_m[:, None] & mask_d[None, :]
        q = load_head_rows(Q, b * s_qb, rows_m, s_qn, c0, offs_d, q_mask)
        do = load_head_rows(dO, b * s_gb, rows_m, s_gn, c0, offs_d, q_mask)
        lse, delta = load_saved_stats(Lse, Delta, stats, offs_m, mask_m)
        both = mask_m[:, None] & mask_n[None, :]
        p, ds = softmax_grad_tile(q, k, v, do, lse, delta, both, scale * 1.4426950408889634)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do)
        if HAS_GMASK:
            ds += tl.load(GMask + (b * Lq + rows_m) * Lk + offs_n[None, :], mask=both, other=0.0) * inv_heads
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
    out = (b * Lk + rows_n) * C + c0 + offs_d[None, :]
    tl.store(dK + out, (dk * scale).to(dK.dtype.element_ty), mask=kv_mask)
    tl.store(dV + out, dv.to(dV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _atm_bwd_dq(Q, K, V, dO, GMask, Lse, Delta, dQ, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                Lq, Lk, C, heads, scale, inv_heads,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                HAS_GMASK: tl.constexpr):
    pid_m = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < Lq
    rows_m = offs_m[:, None].to(tl.int64)
    q_mask = mask_m[:, None] & mask_d[None, :]
    q = load_head_rows(Q, b * s_qb, rows_m, s_qn, c0, offs_d, q_mask)
    do = load_head_rows(dO, b * s_gb, rows_m, s_gn, c0, offs_d, q_mask)
    stats = (b * heads + head) * Lq
    lse, delta = load_saved_stats(Lse, Delta, stats, offs_m, mask_m)
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < Lk
        kv_mask = mask_n[:, None] & mask_d[None, :]
        rows_n = offs_n[:, None].to(tl.int64)
        k = load_head_rows(K, b * s_kb, rows_n, s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b * s_vb, rows_n, s_vn, c0, offs_d, kv_mask)
        both = mask_m[:, None] & mask_n[None, :]
        _, ds = softmax_grad_tile(q, k, v, do, lse, delta, both, scale * 1.4426950408889634)
        if HAS_GMASK:
            ds += tl.load(GMask + (b * Lq + rows_m) * Lk + offs_n[None, :], mask=both, other=0.0) * inv_heads
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(dQ + (b * Lq + rows_m) * C + c0 + offs_d[None, :], (dq * scale).to(dQ.dtype.element_ty), mask=q_mask)


def block_sizes(q: torch.Tensor, head_dim: int) -> dict:
    """64 x 64 tiles on a GPU (32 x 64 above head dim 32 in fp32); 16 x 16 in the CPU interpreter."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    if not q.is_cuda:
        return dict(BLOCK_D=block_d, BLOCK_M=16, BLOCK_N=16)
    return dict(BLOCK_D=block_d, BLOCK_M=32 if (block_d > 32 and q.dtype == torch.float32) else 64, BLOCK_N=64)



def forward(q, k, v, num_heads: int, scale: float):
    """Returns (out (B, Q, C), mask_logits (B, Q, L)) in q's dtype and lse (B, heads, Q) fp32."""
    q, k, v = (unit_channel_stride(t) for t in (q, k, v))
    B, Lq, C = q.shape
    Lk = k.shape[1]
    head_dim = C // num_heads
    out = _alloc.empty((B, Lq, C), q.dtype, q.device)
    mask = torch.zeros((B, Lq, Lk), dtype=torch.float32, device=q.device)  # atomic adds accumulate here
    lse = _alloc.empty((B, num_heads, Lq), torch.float32, q.device)
    blocks = block_sizes(q, head_dim)
    grid = (triton.cdiv(Lq, blocks["BLOCK_M"]), B * num_heads)
    _atm_fwd[grid](q, k, v, out, mask, lse, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0),
                   v.stride(1), Lq, Lk, C, num_heads, scale, 1.0 / num_heads, HEAD_DIM=head_dim, **blocks)
    return out, mask.to(q.dtype), lse


def backward(grad_out, grad_mask, q, k, v, out, lse, num_heads: int, scale: float):
    q, k, v = (unit_channel_stride(t) for t in (q, k, v))
    B, Lq, C = q.shape
    Lk = k.shape[1]
    head_dim = C // num_heads
    grad_out = torch.zeros_like(out) if grad_out is None else unit_channel_stride(grad_out)
    lse = lse.contiguous()
    delta = (grad_out.float() * out.float()).view(B, Lq, num_heads, head_dim).sum(-1).transpose(1, 2).contiguous()
    has_gmask = grad_mask is not None
    gmask = grad_mask.contiguous() if has_gmask else delta  # any pointer when unused
    grad_q = _alloc.empty((B, Lq, C), q.dtype, q.device)
    grad_k = _alloc.empty((B, Lk, C), k.dtype, k.device)
    grad_v = _alloc.empty((B, Lk, C), v.dtype, v.device)
    blocks = block_sizes(q, head_dim)
    common = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), grad_out.stride(0),
              grad_out.stride(1), Lq, Lk, C, num_heads, scale, 1.0 / num_heads)
    _atm_bwd_dkdv[(triton.cdiv(Lk, blocks["BLOCK_N"]), B * num_heads)](
        q, k, v, grad_out, gmask, lse, delta, grad_k, grad_v, *common, HEAD_DIM=head_dim, HAS_GMASK=has_gmask,
        **blocks)
    _atm_bwd_dq[(triton.cdiv(Lq, blocks["BLOCK_M"]), B * num_heads)](
        q, k, v, grad_out, gmask, lse, delta, grad_q, *common, HEAD_DIM=head_dim, HAS_GMASK=has_gmask, **blocks)
    return grad_q, grad_k, grad_v


def shipped_configs() -> list[tuple[str, object, dict, dict]]:
    """Every (kernel, signature, constexprs) a CUDA launch can use: for python/compile_report.py."""
    configs = []
    ints = {n: "i32" for n in ("s_qb", "s_qn", "s_kb", "s_kn", "s_vb", "s_vn", "s_gb", "s_gn", "Lq", "Lk", "C", "heads")}
    floats = {"scale": "fp32", "inv_heads": "fp32"}
    for dtype, ptr in ((torch.float32, "*fp32"), (torch.float16, "*fp16"), (torch.bfloat16, "*bf16")):
        for head_dim in (16, 32, 64):
            blocks = dict(BLOCK_D=max(16, head_dim), BLOCK_N=64,
                          BLOCK_M=32 if (head_dim > 32 and dtype == torch.float32) else 64)
            const = dict(HEAD_DIM=head_dim, **blocks)
            name = f"{ptr[1:]} d{head_dim} {blocks['BLOCK_M']}x{blocks['BLOCK_N']}"
            fwd = {**{n: ptr for n in ("Q", "K", "V", "Out")}, "Mask": "*fp32", "Lse": "*fp32", **ints, **floats}
            configs.append((f"_atm_fwd {name}", _atm_fwd, fwd, const))
            bwd = {**{n: ptr for n in ("Q", "K", "V", "dO", "dK", "dV", "dQ", "GMask")}, "Lse": "*fp32",
                   "Delta": "*fp32", **ints, **floats}
            for label, kernel in (("_atm_bwd_dkdv", _atm_bwd_dkdv), ("_atm_bwd_dq", _atm_bwd_dq)):
                for has_gmask in (True, False):
                    configs.append((f"{label} {name} mask_grad={has_gmask}", kernel, bwd,
                                    dict(const, HAS_GMASK=has_gmask)))
    return configs
