"""Triton kernels of the stripe attention, forward and backward (the only module that imports triton;
imported lazily by the registration on first use).

One launch covers both halves straight from the (B, N, C) token tensors through strides: program
(m, b * heads + head, unit) handles query block m of stripe `unit` (horizontal stripes first, then
vertical) for one head. Token i of a stripe is base + (i // run) * W + i % run, where a horizontal
stripe has base = first row * W and run = W, a vertical one base = first column and run = its width;
so no partition, pad or permute copies exist, and the last, shorter stripe has no padded tokens.
Softmax is online over key blocks (flash-style) with fp32 statistics; offsets are int64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._triton_common import unit_channel_stride
from hrvit_kernels.ops._triton_attention import (load_head_rows, load_saved_stats, online_softmax_step,
                                                 softmax_grad_tile)

LOG2E = 1.4426950408889634


@triton.jit
def _stripe_geometry(unit, H, W, SW, n_h_stripes):
    """(base token, run length, stripe length, half) of stripe `unit`."""
    is_v = unit >= n_h_stripes
    start = tl.where(is_v, unit - n_h_stripes, unit) * SW
    rows = tl.minimum(SW, H - start)
    cols = tl.minimum(SW, W - start)
    base = tl.where(is_v, start, start * W)
    run = tl.where(is_v, cols, W)
    length = tl.where(is_v, cols * H, rows * W)
    return base, run, length, is_v.to(tl.int32)


@triton.jit
def _tokens(base, run, W, offs):
    return (base + (offs // run) * W + offs % run).to(tl.int64)


@triton.jit
def _stripe_fwd(Q, K, V, Out, Lse,
                s_qb, s_qn, s_kb, s_kn, s_vb, s_vn,
                H, W, C, SW, n_h_stripes, heads, qk_scale_log2,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // heads
    head = tl.program_id(1) % heads
    base, run, length, half = _stripe_geometry(tl.program_id(2), H, W, SW, n_h_stripes)
    if pid_m * BLOCK_M >= length:
        return
    N = H * W
    c0 = half * (C // 2) + head * HEAD_DIM
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < length
    tok_m = _tokens(base, run, W, offs_m)
    b64 = b.to(tl.int64)
    q = load_head_rows(Q, b64 * s_qb, tok_m[:, None], s_qn, c0, offs_d, mask_m[:, None] & mask_d[None, :])
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, length, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < length
        tok_n = _tokens(base, run, W, offs_n)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = load_head_rows(K, b64 * s_kb, tok_n[:, None], s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b64 * s_vb, tok_n[:, None], s_vn, c0, offs_d, kv_mask)
        s = tl.dot(q, tl.trans(k)) * qk_scale_log2  # logits in base 2
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, v, m_i, l_i, acc)
    acc = acc / l_i[:, None]
    tl.store(Out + (b64 * N + tok_m[:, None]) * C + c0 + offs_d[None, :], acc.to(Out.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])
    lse_row = (b64 * 2 + half) * heads + head
    tl.store(Lse + lse_row * N + tok_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _stripe_bwd_dkdv(Q, K, V, dO, Lse, Delta, dK, dV,
                     s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                     H, W, C, SW, n_h_stripes, heads, scale, qk_scale_log2,
                     HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     KV_ALIASED: tl.constexpr):
    """Key block pid_n of one stripe and head: dK = scale dS^T Q and dV = P^T dO over all its queries."""
    pid_n = tl.program_id(0)
    b = tl.program_id(1) // heads
    head = tl.program_id(1) % heads
    base, run, length, half = _stripe_geometry(tl.program_id(2), H, W, SW, n_h_stripes)
    if pid_n * BLOCK_N >= length:
        return
    N = H * W
    c0 = half * (C // 2) + head * HEAD_DIM
    b64 = b.to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < length
    tok_n = _tokens(base, run, W, offs_n)
    kv_mask = mask_n[:, None] & mask_d[None, :]
    k = load_head_rows(K, b64 * s_kb, tok_n[:, None], s_kn, c0, offs_d, kv_mask)
    v = load_head_rows(V, b64 * s_vb, tok_n[:, None], s_vn, c0, offs_d, kv_mask)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    stat_row = ((b64 * 2 + half) * heads + head) * N
    for start_m in range(0, length, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < length
        tok_m = _tokens(base, run, W, offs_m)
        q_mask = mask_m[:, None] & mask_d[None, :]
        q = load_head_rows(Q, b64 * s_qb, tok_m[:, None], s_qn, c0, offs_d, q_mask)
        do = load_head_rows(dO, b64 * s_gb, tok_m[:, None], s_gn, c0, offs_d, q_mask)
        lse, delta = load_saved_stats(Lse, Delta, stat_row, tok_m, mask_m)
        p, ds = softmax_grad_tile(q, k, v, do, lse, delta, mask_m[:, None] & mask_n[None, :], qk_scale_log2)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
    dk = dk * scale
    out_offs = (b64 * N + tok_n[:, None]) * C + c0 + offs_d[None, :]
    if KV_ALIASED:
        tl.store(dV + out_offs, (dk + dv).to(dV.dtype.element_ty), mask=kv_mask)
    else:
        tl.store(dK + out_offs, dk.to(dK.dtype.element_ty), mask=kv_mask)
        tl.store(dV + out_offs, dv.to(dV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _stripe_bwd_dq(Q, K, V, dO, Lse, Delta, dQ,
                   s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                   H, W, C, SW, n_h_stripes, heads, scale, qk_scale_log2,
                   HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query block pid_m of one stripe and head: dQ = scale dS K over all its keys."""
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // heads
    head = tl.program_id(1) % heads
    base, run, length, half = _stripe_geometry(tl.program_id(2), H, W, SW, n_h_stripes)
    if pid_m * BLOCK_M >= length:
        return
    N = H * W
    c0 = half * (C // 2) + head * HEAD_DIM
    b64 = b.to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < length
    tok_m = _tokens(base, run, W, offs_m)
    q_mask = mask_m[:, None] & mask_d[None, :]
    q = load_head_rows(Q, b64 * s_qb, tok_m[:, None], s_qn, c0, offs_d, q_mask)
    do = load_head_rows(dO, b64 * s_gb, tok_m[:, None], s_gn, c0, offs_d, q_mask)
    stat_row = ((b64 * 2 + half) * heads + head) * N
    lse, delta = load_saved_stats(Lse, Delta, stat_row, tok_m, mask_m)
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, length, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < length
        tok_n = _tokens(base, run, W, offs_n)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = load_head_rows(K, b64 * s_kb, tok_n[:, None], s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b64 * s_vb, tok_n[:, None], s_vn, c0, offs_d, kv_mask)
        _, ds = softmax_grad_tile(q, k, v, do, lse, delta, mask_m[:, None] & mask_n[None, :], qk_scale_log2)
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(dQ + (b64 * N + tok_m[:, None]) * C + c0 + offs_d[None, :], (dq * scale).to(dQ.dtype.element_ty),
             mask=q_mask)


def block_sizes(q: torch.Tensor, head_dim: int) -> dict:
    """Tile sizes: 64 x 64 on a GPU (32 x 64 for head dims above 32 in fp32, to fit shared memory),
    16 x 16 in the CPU interpreter (which is slow; parity there needs coverage, not speed)."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    if not q.is_cuda:
        return dict(BLOCK_D=block_d, BLOCK_M=16, BLOCK_N=16)
    block_m = 32 if (block_d > 32 and q.dtype == torch.float32) else 64
    return dict(BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=64)


def _geometry(H: int, W: int, stripe_width: int):
    n_h, n_v = -(-H // stripe_width), -(-W // stripe_width)
    longest = stripe_width * max(H, W)
    return n_h, n_v, longest



def forward(q, k, v, H: int, W: int, stripe_width: int, heads: int, head_dim: int, scale: float):
    """Returns (out (B, N, C) in q's dtype, lse (B, 2 * heads, N) fp32). ``v=None`` means k is v."""
    B, N, C = q.shape
    # The kernels read channels with unit stride (any batch and token strides): other layouts
    # (channel-major, expanded, strided channel slices) are copied first.
    q, k = unit_channel_stride(q), unit_channel_stride(k)
    v = k if v is None else unit_channel_stride(v)
    out = _alloc.empty((B, N, C), q.dtype, q.device)
    lse = _alloc.empty((B, 2 * heads, N), torch.float32, q.device)
    n_h, n_v, longest = _geometry(H, W, stripe_width)
    blocks = block_sizes(q, head_dim)
    grid = (triton.cdiv(longest, blocks["BLOCK_M"]), B * heads, n_h + n_v)
    _stripe_fwd[grid](q, k, v, out, lse, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                      v.stride(0), v.stride(1), H, W, C, stripe_width, n_h, heads, scale * LOG2E,
                      HEAD_DIM=head_dim, **blocks)
    return out, lse


def backward(grad_out, q, k, v, out, lse, H: int, W: int, stripe_width: int, heads: int, head_dim: int,
             scale: float):
    """Returns (grad_q, grad_k, grad_v); with ``v=None`` (k is v) grad_k is the whole gradient of that
    tensor and grad_v is None."""
    B, N, C = q.shape
    aliased = v is None
    q, k, grad_out = unit_channel_stride(q), unit_channel_stride(k), unit_channel_stride(grad_out)
    v = k if aliased else unit_channel_stride(v)
    lse = lse.contiguous()
    # Delta = rowsum(dO * O) per token, half and head: (B, 2 * heads, N) like lse.
    delta = (grad_out.float() * out.float()).view(B, N, 2 * heads, head_dim).sum(-1).transpose(1, 2).contiguous()
    grad_q = _alloc.empty((B, N, C), q.dtype, q.device)
    grad_v = _alloc.empty((B, N, C), q.dtype, q.device)
    grad_k = grad_v if aliased else _alloc.empty((B, N, C), q.dtype, q.device)
    n_h, n_v, longest = _geometry(H, W, stripe_width)
    blocks = block_sizes(q, head_dim)
    common = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
              grad_out.stride(0), grad_out.stride(1), H, W, C, stripe_width, n_h, heads, scale, scale * LOG2E)
    grid_n = (triton.cdiv(longest, blocks["BLOCK_N"]), B * heads, n_h + n_v)
    _stripe_bwd_dkdv[grid_n](q, k, v, grad_out, lse, delta, grad_k, grad_v, *common, HEAD_DIM=head_dim,
                             KV_ALIASED=aliased, **blocks)
    grid_m = (triton.cdiv(longest, blocks["BLOCK_M"]), B * heads, n_h + n_v)
    _stripe_bwd_dq[grid_m](q, k, v, grad_out, lse, delta, grad_q, *common, HEAD_DIM=head_dim, **blocks)
    return grad_q, (grad_v if aliased else grad_k), (None if aliased else grad_v)


def shipped_configs() -> list[tuple[str, object, dict, dict]]:
    """Every (kernel, signature, constexprs) a CUDA launch can use: for python/compile_report.py."""
    configs = []
    for dtype, ptr in ((torch.float32, "*fp32"), (torch.float16, "*fp16"), (torch.bfloat16, "*bf16")):
        for head_dim in (16, 24, 32, 48, 64):
            blocks = block_sizes(torch.empty(0, dtype=dtype, device="meta").as_subclass(_CudaLike), head_dim)
            const = dict(HEAD_DIM=head_dim, **blocks)
            ints = {n: "i32" for n in ("s_qb", "s_qn", "s_kb", "s_kn", "s_vb", "s_vn", "s_gb", "s_gn",
                                       "H", "W", "C", "SW", "n_h_stripes", "heads")}
            name = f"{str(dtype)[6:]} d{head_dim} {blocks['BLOCK_M']}x{blocks['BLOCK_N']}"
            fwd_sig = {**{n: ptr for n in ("Q", "K", "V", "Out")}, "Lse": "*fp32", **ints, "qk_scale_log2": "fp32"}
            configs.append((f"_stripe_fwd {name}", _stripe_fwd, fwd_sig, const))
            bwd_sig = {**{n: ptr for n in ("Q", "K", "V", "dO", "dK", "dV", "dQ")}, "Lse": "*fp32",
                       "Delta": "*fp32", **ints, "scale": "fp32", "qk_scale_log2": "fp32"}
            for aliased in (False, True):
                configs.append((f"_stripe_bwd_dkdv {name} aliased={aliased}", _stripe_bwd_dkdv, bwd_sig,
                                dict(const, KV_ALIASED=aliased)))
            configs.append((f"_stripe_bwd_dq {name}", _stripe_bwd_dq, bwd_sig, const))
    return configs


class _CudaLike(torch.Tensor):
    """A meta tensor that answers is_cuda=True, to ask block_sizes for the GPU choice."""

    @property
    def is_cuda(self):
        return True
