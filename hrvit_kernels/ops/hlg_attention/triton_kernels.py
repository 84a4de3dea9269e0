"""Triton kernels of HLG's local and global attention, forward and backward (the only module of these ops that
imports triton; imported lazily on first use).

Local: program (window, b * heads + head) holds its whole 7 x 7 window in one 64-row tile: window slot t is
pixel (7a + t // 7, 7b + t % 7) (contiguous) or (n_h (t // 7) + a, n_w (t % 7) + b) (dilated), read in place
from the token tensors through strides; slots in the padding are masked. The query is also the key.
Global: program (query block, b * heads + head), an online softmax over key tiles; the bias of query (y, x)
and key m is gathered from the head's offset table at (y + H - 1)(2W - 1) + x + W - 1 - ((m // W)(2W - 1) +
m % W). Base-2 logits are computed one way, dot * scale log2e + bias log2e, in forward and backward alike.
The bias gradients are atomic fp32 adds (their summation order, and so the last bit, may vary between runs).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._triton_attention import load_head_rows, load_saved_stats, online_softmax_step
from hrvit_kernels.ops._triton_common import unit_channel_stride

LOG2E = 1.4426950408889634
WINDOW_TILE = 64  # one tile holds a window's 49 tokens


@triton.jit
def _window_tokens(window, H, W, n_w, DILATED: tl.constexpr):
    """(token index, is a real pixel) of every slot of a 64-row tile of window `window`."""
    slot = tl.arange(0, 64)
    n_h = (H + 6) // 7
    a = window // n_w
    b = window % n_w
    i = slot // 7
    j = slot % 7
    if DILATED:
        y = n_h * i + a
        x = n_w * j + b
    else:
        y = 7 * a + i
        x = 7 * b + j
    real = (slot < 49) & (y < H) & (x < W)
    return (y * W + x).to(tl.int64), real, slot


@triton.jit
def _local_logits(q, bias_ptr, slot, real, qk_scale_log2):
    """Base-2 logits of a window: q q^T scale log2e + bias log2e, padded keys at -inf."""
    both = real[:, None] & real[None, :]
    bias = tl.load(bias_ptr + slot[:, None] * 49 + slot[None, :], mask=both, other=0.0)
    s = tl.dot(q, tl.trans(q)) * qk_scale_log2 + bias * 1.4426950408889634
    return tl.where(real[None, :], s, float("-inf"))


@triton.jit
def _local_fwd(Q, V, Bias, Out, Lse, s_qb, s_qn, s_vb, s_vn, H, W, C, n_w, heads, qk_scale_log2,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DILATED: tl.constexpr):
    window = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    tok, real, slot = _window_tokens(window, H, W, n_w, DILATED)
    offs_d = tl.arange(0, BLOCK_D)
    mask = real[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = load_head_rows(Q, b * s_qb, tok[:, None], s_qn, c0, offs_d, mask)
    v = load_head_rows(V, b * s_vb, tok[:, None], s_vn, c0, offs_d, mask)
    s = _local_logits(q, Bias + head * 2401, slot, real, qk_scale_log2)
    m = tl.max(s, 1)
    p = tl.exp2(s - m[:, None])
    l = tl.sum(p, 1)
    out = tl.dot(p.to(v.dtype), v) / l[:, None]
    N = H * W
    tl.store(Out + (b * N + tok[:, None]) * C + c0 + offs_d[None, :], out.to(Out.dtype.element_ty), mask=mask)
    tl.store(Lse + (b * heads + head) * N + tok, m + tl.log2(l), mask=real)


@triton.jit
def _local_bwd(Q, V, dO, Bias, Lse, Delta, dQ, dV, dBias, s_qb, s_qn, s_vb, s_vn, s_gb, s_gn, H, W, C, n_w, heads,
               scale, qk_scale_log2, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, DILATED: tl.constexpr):
    window = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    N = H * W
    tok, real, slot = _window_tokens(window, H, W, n_w, DILATED)
    offs_d = tl.arange(0, BLOCK_D)
    mask = real[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = load_head_rows(Q, b * s_qb, tok[:, None], s_qn, c0, offs_d, mask)
    v = load_head_rows(V, b * s_vb, tok[:, None], s_vn, c0, offs_d, mask)
    do = load_head_rows(dO, b * s_gb, tok[:, None], s_gn, c0, offs_d, mask)
    lse, delta = load_saved_stats(Lse, Delta, (b * heads + head) * N, tok, real)
    s = _local_logits(q, Bias + head * 2401, slot, real, qk_scale_log2)
    both = real[:, None] & real[None, :]
    p = tl.where(both, tl.exp2(s - lse[:, None]), 0.0)
    ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
    dv = tl.dot(tl.trans(p.to(do.dtype)), do)
    # q is the query (rows of ds) and the key (columns of ds).
    dq = (tl.dot(ds.to(q.dtype), q) + tl.dot(tl.trans(ds.to(q.dtype)), q)) * scale
    rows = (b * N + tok[:, None]) * C + c0 + offs_d[None, :]
    tl.store(dQ + rows, dq.to(dQ.dtype.element_ty), mask=mask)
    tl.store(dV + rows, dv.to(dV.dtype.element_ty), mask=mask)
    tl.atomic_add(dBias + head * 2401 + slot[:, None] * 49 + slot[None, :], ds, mask=both)


@triton.jit
def _global_bias(Table, head, T, qbase, kbase, valid):
    """Base-2 bias of a (queries x keys) tile from the head's offset table."""
    return tl.load(Table + head * T + qbase[:, None] - kbase[None, :], mask=valid, other=0.0) * 1.4426950408889634


@triton.jit
def _query_base(offs_m, W, GH, GW):
    return (offs_m // W + GH - 1) * (2 * GW - 1) + offs_m % W + GW - 1


@triton.jit
def _key_base(offs_n, GW):
    return (offs_n // GW) * (2 * GW - 1) + offs_n % GW


@triton.jit
def _global_fwd(Q, K, V, Table, Out, Lse, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, H, W, GH, GW, M, C, heads, T,
                qk_scale_log2,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    N = H * W
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N
    q = load_head_rows(Q, b * s_qb, offs_m[:, None].to(tl.int64), s_qn, c0, offs_d, mask_m[:, None] & mask_d[None, :])
    qbase = _query_base(offs_m, W, GH, GW)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, M, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        rows = offs_n[:, None].to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = load_head_rows(K, b * s_kb, rows, s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b * s_vb, rows, s_vn, c0, offs_d, kv_mask)
        bias = _global_bias(Table, head, T, qbase, _key_base(offs_n, GW), mask_m[:, None] & mask_n[None, :])
        s = tl.where(mask_n[None, :], tl.dot(q, tl.trans(k)) * qk_scale_log2 + bias, float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, v, m_i, l_i, acc)
    acc = acc / l_i[:, None]
    tl.store(Out + (b * N + offs_m[:, None].to(tl.int64)) * C + c0 + offs_d[None, :], acc.to(Out.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])
    tl.store(Lse + (b * heads + head) * N + offs_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _global_grad_tile(q, k, v, do, lse, delta, valid, qk_scale_log2, bias):
    """P and dS of a (queries x keys) tile from the saved statistics, the bias included in the logits."""
    p = tl.where(valid, tl.exp2(tl.dot(q, tl.trans(k)) * qk_scale_log2 + bias - lse[:, None]), 0.0)
    return p, p * (tl.dot(do, tl.trans(v)) - delta[:, None])


@triton.jit
def _global_bwd_dkdv(Q, K, V, dO, Table, Lse, Delta, dK, dV, dTable, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                     H, W, GH, GW, M, C, heads, T, scale, qk_scale_log2,
                     HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key block pid_n of one head: dK, dV over all queries, and the bias table's gradient."""
    pid_n = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    N = H * W
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < M
    rows_n = offs_n[:, None].to(tl.int64)
    kv_mask = mask_n[:, None] & mask_d[None, :]
    k = load_head_rows(K, b * s_kb, rows_n, s_kn, c0, offs_d, kv_mask)
    v = load_head_rows(V, b * s_vb, rows_n, s_vn, c0, offs_d, kv_mask)
    kbase = _key_base(offs_n, GW)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < N
        rows_m = offs_m[:, None].to(tl.int64)
        q_mask = mask_m[:, None] & mask_d[None, :]
        q = load_head_rows(Q, b * s_qb, rows_m, s_qn, c0, offs_d, q_mask)
        do = load_head_rows(dO, b * s_gb, rows_m, s_gn, c0, offs_d, q_mask)
        lse, delta = load_saved_stats(Lse, Delta, (b * heads + head) * N, offs_m, mask_m)
        both = mask_m[:, None] & mask_n[None, :]
        qbase = _query_base(offs_m, W, GH, GW)
        bias = _global_bias(Table, head, T, qbase, kbase, both)
        p, ds = _global_grad_tile(q, k, v, do, lse, delta, both, qk_scale_log2, bias)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
        tl.atomic_add(dTable + head * T + qbase[:, None] - kbase[None, :], ds, mask=both)
    out = (b * M + rows_n) * C + c0 + offs_d[None, :]
    tl.store(dK + out, (dk * scale).to(dK.dtype.element_ty), mask=kv_mask)
    tl.store(dV + out, dv.to(dV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _global_bwd_dq(Q, K, V, dO, Table, Lse, Delta, dQ, s_qb, s_qn, s_kb, s_kn, s_vb, s_vn, s_gb, s_gn,
                   H, W, GH, GW, M, C, heads, T, scale, qk_scale_log2,
                   HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = (tl.program_id(1) // heads).to(tl.int64)
    head = tl.program_id(1) % heads
    c0 = head * HEAD_DIM
    N = H * W
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N
    rows_m = offs_m[:, None].to(tl.int64)
    q_mask = mask_m[:, None] & mask_d[None, :]
    q = load_head_rows(Q, b * s_qb, rows_m, s_qn, c0, offs_d, q_mask)
    do = load_head_rows(dO, b * s_gb, rows_m, s_gn, c0, offs_d, q_mask)
    lse, delta = load_saved_stats(Lse, Delta, (b * heads + head) * N, offs_m, mask_m)
    qbase = _query_base(offs_m, W, GH, GW)
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, M, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        rows_n = offs_n[:, None].to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = load_head_rows(K, b * s_kb, rows_n, s_kn, c0, offs_d, kv_mask)
        v = load_head_rows(V, b * s_vb, rows_n, s_vn, c0, offs_d, kv_mask)
        both = mask_m[:, None] & mask_n[None, :]
        bias = _global_bias(Table, head, T, qbase, _key_base(offs_n, GW), both)
        _, ds = _global_grad_tile(q, k, v, do, lse, delta, both, qk_scale_log2, bias)
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(dQ + (b * N + rows_m) * C + c0 + offs_d[None, :], (dq * scale).to(dQ.dtype.element_ty), mask=q_mask)


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def global_block_sizes(q: torch.Tensor, head_dim: int) -> dict:
    """64 x 64 tiles on a GPU (32 x 64 above head dim 32 in fp32); 16 x 16 in the CPU interpreter."""
    block_d = _block_d(head_dim)
    if not q.is_cuda:
        return dict(BLOCK_D=block_d, BLOCK_M=16, BLOCK_N=16)
    return dict(BLOCK_D=block_d, BLOCK_M=32 if (block_d > 32 and q.dtype == torch.float32) else 64, BLOCK_N=64)


def _delta(grad_out, out, heads):
    B, N, C = out.shape
    return (grad_out.float() * out.float()).view(B, N, heads, C // heads).sum(-1).transpose(1, 2).contiguous()


def local_forward(q, v, H: int, W: int, dilated: bool, bias, scale: float):
    q, v = unit_channel_stride(q), unit_channel_stride(v)
    B, N, C = q.shape
    heads = bias.shape[0]
    bias = bias.float().contiguous()
    out = _alloc.empty((B, N, C), q.dtype, q.device)
    lse = _alloc.empty((B, heads, N), torch.float32, q.device)
    n_w = -(-W // 7)
    grid = (-(-H // 7) * n_w, B * heads)
    _local_fwd[grid](q, v, bias, out, lse, q.stride(0), q.stride(1), v.stride(0), v.stride(1), H, W, C, n_w, heads,
                     scale * LOG2E, HEAD_DIM=C // heads, BLOCK_D=_block_d(C // heads), DILATED=dilated)
    return out, lse


def local_backward(grad_out, q, v, out, lse, H: int, W: int, dilated: bool, bias, scale: float):
    q, v, grad_out = unit_channel_stride(q), unit_channel_stride(v), unit_channel_stride(grad_out)
    B, N, C = q.shape
    heads = bias.shape[0]
    delta = _delta(grad_out, out, heads)
    grad_q = _alloc.empty((B, N, C), q.dtype, q.device)
    grad_v = _alloc.empty((B, N, C), v.dtype, v.device)
    grad_bias = torch.zeros(tuple(bias.shape), dtype=torch.float32, device=q.device)  # atomic adds
    n_w = -(-W // 7)
    grid = (-(-H // 7) * n_w, B * heads)
    _local_bwd[grid](q, v, grad_out, bias.float().contiguous(), lse.contiguous(), delta, grad_q, grad_v, grad_bias,
                     q.stride(0), q.stride(1), v.stride(0), v.stride(1), grad_out.stride(0), grad_out.stride(1),
                     H, W, C, n_w, heads, scale, scale * LOG2E, HEAD_DIM=C // heads, BLOCK_D=_block_d(C // heads),
                     DILATED=dilated)
    return grad_q, grad_v, grad_bias.to(bias.dtype)


def global_forward(q, k, v, H: int, W: int, grid_h: int, grid_w: int, table, scale: float):
    q, k, v = (unit_channel_stride(t) for t in (q, k, v))
    B, N, C = q.shape
    M, heads = k.shape[1], table.shape[0]
    table = table.float().contiguous()
    out = _alloc.empty((B, N, C), q.dtype, q.device)
    lse = _alloc.empty((B, heads, N), torch.float32, q.device)
    blocks = global_block_sizes(q, C // heads)
    grid = (triton.cdiv(N, blocks["BLOCK_M"]), B * heads)
    _global_fwd[grid](q, k, v, table, out, lse, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0),
                      v.stride(1), H, W, grid_h, grid_w, M, C, heads, table.shape[1], scale * LOG2E,
                      HEAD_DIM=C // heads, **blocks)
    return out, lse


def global_backward(grad_out, q, k, v, out, lse, H: int, W: int, grid_h: int, grid_w: int, table, scale: float):
    q, k, v, grad_out = (unit_channel_stride(t) for t in (q, k, v, grad_out))
    B, N, C = q.shape
    M, heads = k.shape[1], table.shape[0]
    tf = table.float().contiguous()
    delta = _delta(grad_out, out, heads)
    lse = lse.contiguous()
    grad_q = _alloc.empty((B, N, C), q.dtype, q.device)
    grad_k = _alloc.empty((B, M, C), k.dtype, k.device)
    grad_v = _alloc.empty((B, M, C), v.dtype, v.device)
    grad_table = torch.zeros(tuple(table.shape), dtype=torch.float32, device=q.device)  # atomic adds
    blocks = global_block_sizes(q, C // heads)
    common = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), grad_out.stride(0),
              grad_out.stride(1), H, W, grid_h, grid_w, M, C, heads, table.shape[1], scale, scale * LOG2E)
    _global_bwd_dkdv[(triton.cdiv(M, blocks["BLOCK_N"]), B * heads)](
        q, k, v, grad_out, tf, lse, delta, grad_k, grad_v, grad_table, *common, HEAD_DIM=C // heads, **blocks)
    _global_bwd_dq[(triton.cdiv(N, blocks["BLOCK_M"]), B * heads)](
        q, k, v, grad_out, tf, lse, delta, grad_q, *common, HEAD_DIM=C // heads, **blocks)
    return grad_q, grad_k, grad_v, grad_table.to(table.dtype)


def shipped_configs() -> list[tuple[str, object, dict, dict]]:
    """Every (kernel, signature, constexprs) a CUDA launch can use: for python/compile_report.py."""
    configs = []
    for dtype, ptr in ((torch.float32, "*fp32"), (torch.float16, "*fp16"), (torch.bfloat16, "*bf16")):
        for head_dim in (16, 32, 64):
            block_d = _block_d(head_dim)
            tag = f"{ptr[1:]} d{head_dim}"
            ints = {n: "i32" for n in ("s_qb", "s_qn", "s_vb", "s_vn", "H", "W", "C", "n_w", "heads")}
            local_fwd = {"Q": ptr, "V": ptr, "Bias": "*fp32", "Out": ptr, "Lse": "*fp32", **ints,
                         "qk_scale_log2": "fp32"}
            local_bwd = {"Q": ptr, "V": ptr, "dO": ptr, "Bias": "*fp32", "Lse": "*fp32", "Delta": "*fp32", "dQ": ptr,
                         "dV": ptr, "dBias": "*fp32", **ints, "s_gb": "i32", "s_gn": "i32", "scale": "fp32",
                         "qk_scale_log2": "fp32"}
            for dilated in (False, True):
                const = dict(HEAD_DIM=head_dim, BLOCK_D=block_d, DILATED=dilated)
                configs.append((f"_local_fwd {tag} dilated={dilated}", _local_fwd, local_fwd, const))
                configs.append((f"_local_bwd {tag} dilated={dilated}", _local_bwd, local_bwd, const))
            blocks = dict(BLOCK_D=block_d, BLOCK_M=32 if (block_d > 32 and dtype == torch.float32) else 64,
                          BLOCK_N=64)
            gints = {n: "i32" for n in ("s_qb", "s_qn", "s_kb", "s_kn", "s_vb", "s_vn", "H", "W", "GH", "GW", "M", "C",
                                        "heads", "T")}
            const = dict(HEAD_DIM=head_dim, **blocks)
            gfwd = {"Q": ptr, "K": ptr, "V": ptr, "Table": "*fp32", "Out": ptr, "Lse": "*fp32", **gints,
                    "qk_scale_log2": "fp32"}
            configs.append((f"_global_fwd {tag}", _global_fwd, gfwd, const))
            gbwd = {**{n: ptr for n in ("Q", "K", "V", "dO", "dK", "dV", "dQ")}, "Table": "*fp32", "Lse": "*fp32",
                    "Delta": "*fp32", "dTable": "*fp32", **gints, "s_gb": "i32", "s_gn": "i32", "scale": "fp32",
                    "qk_scale_log2": "fp32"}
            configs.append((f"_global_bwd_dkdv {tag}", _global_bwd_dkdv, gbwd, const))
            configs.append((f"_global_bwd_dq {tag}", _global_bwd_dq, gbwd, const))
    return configs
