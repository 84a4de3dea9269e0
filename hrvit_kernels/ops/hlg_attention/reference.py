"""Plain-PyTorch references of HLG's attentions: the oracle of the kernels and the fallback.

Local attention: 7 x 7 windows over the map padded bottom/right with zeros to 7 * ceil(H/7) x 7 * ceil(W/7);
contiguous window (a, b) holds pixels (7a + i, 7b + j), dilated window (a, b) pixels (n_h i + a, n_w j + b)
with n_h = ceil(H/7), n_w = ceil(W/7) windows per side (i, j < 7; token order 7i + j). The query also serves
as the key; padded keys are masked, padded queries dropped.
Global attention: every pixel against M keys, key m at cell (u, v) = (m // gw, m % gw) of a gh x gw key grid,
by default the map itself (HLG's window tokens take these pseudo-positions; the last stage's keys are the
pixels); the bias of query (y, x) and key m is bias_table[:, (y - u + gh - 1) * (2gw - 1) + (x - v + gw - 1)]:
the offset's bias for keys on the map, SETR-HLG's head's quirky lookup for its window grid.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from hrvit_kernels.ops.hlg_attention.checks import WINDOW


def windows_per_side(hw) -> tuple[int, int]:
    return math.ceil(hw[0] / WINDOW), math.ceil(hw[1] / WINDOW)


def partition(x: torch.Tensor, hw, dilated: bool) -> torch.Tensor:
    """Tokens (B, H*W, C) -> windows (B, n_h*n_w, 49, C) of the zero-padded map."""
    B, _, C = x.shape
    (h, w), (nh, nw) = hw, windows_per_side(hw)
    x = F.pad(x.reshape(B, h, w, C), (0, 0, 0, WINDOW * nw - w, 0, WINDOW * nh - h))
    if dilated:  # rows n_h * i + a: the row index splits as (i, a)
        x = x.reshape(B, WINDOW, nh, WINDOW, nw, C).permute(0, 2, 4, 1, 3, 5)
    else:  # rows 7a + i: (a, i)
        x = x.reshape(B, nh, WINDOW, nw, WINDOW, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, nh * nw, WINDOW * WINDOW, C)


def unpartition(windows: torch.Tensor, hw, dilated: bool) -> torch.Tensor:
    """The inverse of :func:`partition`, cropped back to (B, H*W, C)."""
    B, _, _, C = windows.shape
    (h, w), (nh, nw) = hw, windows_per_side(hw)
    x = windows.reshape(B, nh, nw, WINDOW, WINDOW, C)
    x = x.permute(0, 3, 1, 4, 2, 5) if dilated else x.permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(B, WINDOW * nh, WINDOW * nw, C)[:, :h, :w]
    return x.reshape(B, h * w, C)


def real_tokens(hw, dilated: bool, device) -> torch.Tensor:
    """(n_h*n_w, 49) bool: which window slots hold a pixel of the map (not padding)."""
    ones = torch.ones(1, hw[0] * hw[1], 1, device=device)
    return partition(ones, hw, dilated)[0, :, :, 0] > 0


def hlg_local_attention_reference(q, v, hw, dilated: bool, bias, scale: float) -> torch.Tensor:
    heads = bias.shape[0]
    B, N, C = q.shape
    qw = partition(q, hw, dilated)
    vw = partition(v, hw, dilated)
    windows = qw.shape[1]
    qw = qw.reshape(B, windows, WINDOW * WINDOW, heads, C // heads).transpose(2, 3)
    vw = vw.reshape(B, windows, WINDOW * WINDOW, heads, C // heads).transpose(2, 3)
    logits = (qw * scale) @ qw.transpose(-2, -1) + bias.to(q.dtype)
    keys = real_tokens(hw, dilated, q.device)  # (windows, 49)
    logits = logits.masked_fill(~keys[None, :, None, None, :], float("-inf"))
    out = logits.softmax(-1) @ vw  # (B, windows, heads, 49, d)
    out = out.transpose(2, 3).reshape(B, windows, WINDOW * WINDOW, C)
    return unpartition(out, hw, dilated)


def offset_table(hw, device=None, dtype=torch.float32) -> torch.Tensor:
    """((2H-1)*(2W-1), 2): every offset (dy, dx) between two pixels of an H x W map, row-major, as raw
    numbers (the input of HLG's dynamic position bias)."""
    h, w = hw
    dy = torch.arange(-(h - 1), h, device=device, dtype=dtype)
    dx = torch.arange(-(w - 1), w, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(dy, dx, indexing="ij"), -1).reshape(-1, 2)


@functools.lru_cache(maxsize=16)
def _offset_index(h: int, w: int, keys: int, gh: int, gw: int, device: torch.device) -> torch.Tensor:
    y = torch.arange(h * w, device=device) // w
    x = torch.arange(h * w, device=device) % w
    u = torch.arange(keys, device=device) // gw
    v = torch.arange(keys, device=device) % gw
    return (y[:, None] - u[None, :] + gh - 1) * (2 * gw - 1) + (x[:, None] - v[None, :] + gw - 1)


def offset_index(hw, keys: int, device, key_grid=None) -> torch.Tensor:
    """(H*W, keys) long: the bias-table entry of every pixel against key m at cell (m // gw, m % gw) of the
    key grid (gh, gw), by default the map: then the :func:`offset_table` row of their offset."""
    gh, gw = key_grid or hw
    if torch.compiler.is_compiling():  # traced into the graph; dynamo does not honour the cache
        return _offset_index.__wrapped__(hw[0], hw[1], keys, gh, gw, torch.device(device))
    return _offset_index(int(hw[0]), int(hw[1]), int(keys), int(gh), int(gw), torch.device(device))


def hlg_global_attention_reference(q, k, v, hw, bias_table, scale: float, key_grid=None) -> torch.Tensor:
    heads = bias_table.shape[0]
    B, N, C = q.shape
    M = k.shape[1]
    bias = bias_table.to(q.dtype)[:, offset_index(hw, M, q.device, key_grid)]  # (heads, N, M)
    qh = q.reshape(B, N, heads, C // heads).transpose(1, 2)
    kh = k.reshape(B, M, heads, C // heads).transpose(1, 2)
    vh = v.reshape(B, M, heads, C // heads).transpose(1, 2)
    out = ((qh * scale) @ kh.transpose(-2, -1) + bias).softmax(-1) @ vh
    return out.transpose(1, 2).reshape(B, N, C)
