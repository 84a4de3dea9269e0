"""Plain-PyTorch cross-shaped (stripe) window attention: the oracle and the fallback.

Channels [0, C/2) attend within horizontal stripes of ``stripe_width`` full rows, channels [C/2, C)
within vertical stripes of ``stripe_width`` full columns. When the image side is not a multiple of the
stripe width the last stripe is shorter; here it is padded and its padded keys are masked with -inf,
which is exactly attention over the shorter stripe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _half_attention(q, k, v, rows: int, cols: int, stripe_width: int, heads: int, scale: float):
    """Attention within stripes of ``stripe_width`` rows of a (B, rows*cols, c) row-major image."""
    B, _, c = q.shape
    head_dim = c // heads
    num_stripes = -(-rows // stripe_width)
    pad_rows = num_stripes * stripe_width - rows
    stripe_len = stripe_width * cols

    def to_stripes(t):  # (B, rows*cols, c) -> (B, stripes, heads, stripe_len, head_dim)
        t = F.pad(t.reshape(B, rows, cols, c), (0, 0, 0, 0, 0, pad_rows))
        return t.reshape(B, num_stripes, stripe_len, heads, head_dim).transpose(2, 3)

    logits = (to_stripes(q) * scale) @ to_stripes(k).transpose(-1, -2)
    if pad_rows:
        row_of_token = torch.arange(stripe_len, device=q.device) // cols
        row_of_token = row_of_token + stripe_width * torch.arange(num_stripes, device=q.device)[:, None]
        padded_key = (row_of_token >= rows)[None, :, None, None, :]
        logits = logits.masked_fill(padded_key, float("-inf"))
    out = logits.softmax(dim=-1) @ to_stripes(v)
    out = out.transpose(2, 3).reshape(B, num_stripes * stripe_width, cols, c)[:, :rows]
    return out.reshape(B, rows * cols, c)


def _transpose_image(t, rows: int, cols: int):
    """(B, rows*cols, c) row-major -> (B, cols*rows, c), i.e. the image transposed."""
    B, _, c = t.shape
    return t.reshape(B, rows, cols, c).transpose(1, 2).reshape(B, rows * cols, c)


def cswin_attention_reference(q, k, v, hw, stripe_width: int, heads: int, scale: float):
    H, W = hw
    half = q.shape[-1] // 2
    horizontal = _half_attention(q[..., :half], k[..., :half], v[..., :half], H, W, stripe_width,
                                 heads, scale)
    # Vertical stripes of the image are horizontal stripes of its transpose.
    qt, kt, vt = (_transpose_image(t[..., half:], H, W) for t in (q, k, v))
    vertical = _transpose_image(_half_attention(qt, kt, vt, W, H, stripe_width, heads, scale), W, H)
    return torch.cat([horizontal, vertical], dim=-1)
