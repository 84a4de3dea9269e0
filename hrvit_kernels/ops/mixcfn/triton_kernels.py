"""Triton kernels of the MixCFN mixed-scale depthwise convolution + GELU, forward and backward (the only
module of this op that imports triton; imported lazily on first use).

Program (row block, channel block): BLOCK_W consecutive pixels of one image row x BLOCK_C channels,
read straight from the token layout (B, H*W, R) through strides. The 25 taps of the 5x5 window are
unrolled; a tap outside the 3x3 window contributes only to channels >= split, the 3x3 taps to both
halves with their own weights, so a channel block may straddle the split. Zero padding is a masked
load. The same kernel, by MODE, computes the forward (GELU), the gradient at the pre-activation
(grad_out * GELU'), or the input gradient (the conv of that gradient with flipped taps).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from hrvit_kernels.ops import _alloc
from hrvit_kernels.ops._triton_common import unit_channel_stride

# MODE of _mix_conv (constexpr globals, so the kernel may read them).
FORWARD, PRE_ACTIVATION_GRAD, INPUT_GRAD = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


@triton.jit
def _mix_conv(X, s_xb, s_xn, W3, B3, W5, B5, G, s_gb, s_gn, Out,
              H, W, R, split,
              MODE: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    row = tl.program_id(0)  # b * H * blocks_per_row + h * blocks_per_row + block
    blocks_per_row = tl.cdiv(W, BLOCK_W)
    b = (row // (H * blocks_per_row)).to(tl.int64)
    h = (row // blocks_per_row) % H
    offs_w = (row % blocks_per_row) * BLOCK_W + tl.arange(0, BLOCK_W)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < R
    in3 = offs_c < split
    in5 = mask_c & (offs_c >= split)
    acc = tl.zeros((BLOCK_W, BLOCK_C), tl.float32)
    if MODE != INPUT_GRAD:
        acc += (tl.load(B3 + offs_c, mask=in3, other=0.0).to(tl.float32)
                + tl.load(B5 + (offs_c - split), mask=in5, other=0.0).to(tl.float32))[None, :]
    for tap in tl.static_range(25):
        dy = tap // 5 - 2
        dx = tap % 5 - 2
        # Input gradient: out[p] = sum_taps w[tap] g[p - offset(tap)], i.e. flipped taps.
        sy = -dy if MODE == INPUT_GRAD else dy
        sx = -dx if MODE == INPUT_GRAD else dx
        yy = h + sy + tl.zeros((BLOCK_W,), tl.int32)  # a vector, so the mask below is one too
        xx = offs_w + sx
        ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W) & (offs_w < W)
        w5 = tl.load(W5 + (offs_c - split) * 25 + tap, mask=in5, other=0.0).to(tl.float32)
        if (dy >= -1) and (dy <= 1) and (dx >= -1) and (dx <= 1):
            w5 += tl.load(W3 + offs_c * 9 + (dy + 1) * 3 + (dx + 1), mask=in3, other=0.0).to(tl.float32)
        tok = (yy * W + xx).to(tl.int64)
        x = tl.load(X + b * s_xb + tok[:, None] * s_xn + offs_c[None, :], mask=ok[:, None] & mask_c[None, :],
                    other=0.0).to(tl.float32)
        acc += x * w5[None, :]
    mask = (offs_w < W)[:, None] & mask_c[None, :]
    if MODE == FORWARD:
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    if MODE == PRE_ACTIVATION_GRAD:
        tok_o = (h * W + offs_w).to(tl.int64)
        g = tl.load(G + b * s_gb + tok_o[:, None] * s_gn + offs_c[None, :], mask=mask, other=0.0).to(tl.float32)
        cdf = 0.5 * (1.0 + tl.math.erf(acc * 0.7071067811865476))
        pdf = 0.3989422804014327 * tl.exp(-0.5 * acc * acc)
        acc = g * (cdf + acc * pdf)
    out_tok = (b * H * W + h * W + offs_w).to(tl.int64)
    tl.store(Out + out_tok[:, None] * R + offs_c[None, :], acc.to(Out.dtype.element_ty), mask=mask)


@triton.jit
def _mix_conv_weight_grad(X, s_xb, s_xn, G, Partial, rows, H, W, R, split, rows_per_chunk,
                          BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """Chunk pid(0) of image rows, channel block pid(1): Partial[chunk, tap, c] = sum over the chunk's
    output pixels p of G[p, c] * X[p + offset(tap), c] (taps 0..24), and Partial[chunk, 25, c] = sum G.
    The chunks are summed afterwards in a fixed order: deterministic, no atomics."""
    chunk = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < R
    for tap in tl.static_range(26):
        dy = tap // 5 - 2
        dx = tap % 5 - 2
        acc = tl.zeros((BLOCK_C,), tl.float32)
        for r in range(chunk * rows_per_chunk, tl.minimum((chunk + 1) * rows_per_chunk, rows)):
            b = (r // H).to(tl.int64)
            h = r % H
            for w0 in range(0, W, BLOCK_W):
                offs_w = w0 + tl.arange(0, BLOCK_W)
                ok_w = offs_w < W
                tok = (h * W + offs_w).to(tl.int64)
                g = tl.load(G + (b * H * W + tok)[:, None] * R + offs_c[None, :],
                            mask=ok_w[:, None] & mask_c[None, :], other=0.0).to(tl.float32)
                if tap == 25:
                    acc += tl.sum(g, 0)
                else:
                    yy = h + dy + tl.zeros((BLOCK_W,), tl.int32)
                    xx = offs_w + dx
                    ok = ok_w & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
                    tok_in = (yy * W + xx).to(tl.int64)
                    x = tl.load(X + b * s_xb + tok_in[:, None] * s_xn + offs_c[None, :],
                                mask=ok[:, None] & mask_c[None, :], other=0.0).to(tl.float32)
                    acc += tl.sum(g * x, 0)
        tl.store(Partial + (chunk * 26 + tap) * R + offs_c, acc, mask=mask_c)


def block_sizes(x: torch.Tensor) -> dict:
    """GPU: 32 pixels x 64 channels; the CPU interpreter: 8 x 16 (parity there needs coverage, not speed)."""
    return dict(BLOCK_W=32, BLOCK_C=64) if x.is_cuda else dict(BLOCK_W=8, BLOCK_C=16)


def _conv(mode, x, H, W, weight3, bias3, weight5, bias5, grad=None, out_dtype=None):
    B, N, R = x.shape
    blocks = block_sizes(x)
    out = _alloc.empty((B, N, R), out_dtype or x.dtype, x.device)
    g = grad if grad is not None else x
    grid = (B * H * triton.cdiv(W, blocks["BLOCK_W"]), triton.cdiv(R, blocks["BLOCK_C"]))
    _mix_conv[grid](x, x.stride(0), x.stride(1), weight3, bias3, weight5, bias5, g, g.stride(0), g.stride(1),
                    out, H, W, R, weight3.shape[0], MODE=mode.value, **blocks)
    return out



def forward(x, H: int, W: int, weight3, bias3, weight5, bias5):
    return _conv(FORWARD, unit_channel_stride(x), H, W, weight3.contiguous(), bias3.contiguous(),
                 weight5.contiguous(), bias5.contiguous())


def backward(grad_out, x, H: int, W: int, weight3, bias3, weight5, bias5):
    B, N, R = x.shape
    split = weight3.shape[0]
    if x.numel() == 0:  # an empty batch: no pixels, zero parameter gradients
        return (torch.empty_like(x, memory_format=torch.contiguous_format),
                *(torch.zeros_like(t, memory_format=torch.contiguous_format) for t in (weight3, bias3, weight5, bias5)))
    x, grad_out = unit_channel_stride(x), unit_channel_stride(grad_out)
    w3, b3, w5, b5 = (t.contiguous() for t in (weight3, bias3, weight5, bias5))
    # 1. grad_out * GELU'(conv(x)) in fp32;  2. the input gradient: its conv with flipped taps.
    grad_pre = _conv(PRE_ACTIVATION_GRAD, x, H, W, w3, b3, w5, b5, grad=grad_out, out_dtype=torch.float32)
    grad_x = _conv(INPUT_GRAD, grad_pre, H, W, w3, b3, w5, b5, out_dtype=x.dtype)
    # 3. Weight and bias gradients: fixed chunks of rows, summed in order.
    blocks = block_sizes(x)
    rows = B * H
    chunks = min(rows, 128)
    rows_per_chunk = triton.cdiv(rows, chunks)
    chunks = triton.cdiv(rows, rows_per_chunk)
    partial = _alloc.empty((chunks, 26, R), torch.float32, x.device)
    _mix_conv_weight_grad[(chunks, triton.cdiv(R, blocks["BLOCK_C"]))](
        x, x.stride(0), x.stride(1), grad_pre, partial, rows, H, W, R, split, rows_per_chunk, **blocks)
    total = partial.sum(0)  # (26, R)
    grad_w3 = total[:25].reshape(5, 5, R)[1:4, 1:4, :split].permute(2, 0, 1).reshape(weight3.shape)
    grad_w5 = total[:25, split:].t().reshape(weight5.shape)
    grad_b3, grad_b5 = total[25, :split], total[25, split:]
    # Fresh tensors (views of `total` would alias each other, which custom ops forbid).
    cast = lambda t, like: t.to(like.dtype, memory_format=torch.contiguous_format, copy=True)  # noqa: E731
    return (grad_x, cast(grad_w3, weight3), cast(grad_b3, bias3), cast(grad_w5, weight5), cast(grad_b5, bias5))


def shipped_configs() -> list[tuple[str, object, dict, dict]]:
    """Every (kernel, signature, constexprs) a CUDA launch can use: for python/compile_report.py."""
    configs = []
    blocks = dict(BLOCK_W=32, BLOCK_C=64)
    ints = {n: "i32" for n in ("s_xb", "s_xn", "s_gb", "s_gn", "H", "W", "R", "split", "rows", "rows_per_chunk")}
    for ptr in ("*fp32", "*fp16", "*bf16"):
        for mode, out_ptr, g_ptr in ((FORWARD, ptr, ptr), (PRE_ACTIVATION_GRAD, "*fp32", ptr), (INPUT_GRAD, ptr, ptr)):
            x_ptr = "*fp32" if mode == INPUT_GRAD else ptr
            sig = {"X": x_ptr, "W3": ptr, "B3": ptr, "W5": ptr, "B5": ptr, "G": g_ptr, "Out": out_ptr, **ints}
            configs.append((f"_mix_conv {ptr[1:]} mode={mode.value}", _mix_conv, sig,
                            dict(MODE=mode.value, **blocks)))
        sig = {"X": ptr, "G": "*fp32", "Partial": "*fp32", **ints}
        configs.append((f"_mix_conv_weight_grad {ptr[1:]}", _mix_conv_weight_grad, sig, blocks))
    return configs
