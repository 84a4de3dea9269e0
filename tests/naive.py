"""Deliberately naive implementations of the ops, written independently of the package's references:
explicit loops over stripes, heads and kernel taps."""
from __future__ import annotations

import torch


def cswin_attention_naive(q, k, v, H, W, stripe_width, heads, head_dim, scale):
    B, N, C = q.shape
    half = C // 2
    qi, ki, vi = (t.reshape(B, H, W, C) for t in (q, k, v))
    out = q.new_zeros(B, H, W, C)
    for b in range(B):
        for h in range(heads):
            # Horizontal stripes on channels [0, half), vertical on [half, C).
            for offset, stripes in ((0, [(slice(r, min(r + stripe_width, H)), slice(None))
                                         for r in range(0, H, stripe_width)]),
                                    (half, [(slice(None), slice(c, min(c + stripe_width, W)))
                                            for c in range(0, W, stripe_width)])):
                ch = slice(offset + h * head_dim, offset + (h + 1) * head_dim)
                for rows, cols in stripes:
                    Q = qi[b, rows, cols, ch].reshape(-1, head_dim)
                    K = ki[b, rows, cols, ch].reshape(-1, head_dim)
                    V = vi[b, rows, cols, ch].reshape(-1, head_dim)
                    A = torch.softmax(Q @ K.T * scale, dim=-1)
                    out[b, rows, cols, ch] = (A @ V).reshape(out[b, rows, cols, ch].shape)
    return out.reshape(B, N, C)


def depthwise_conv_naive(img, weight, bias):
    """img (B, H, W, c) channels-last; weight (c, 1, k, k); zero padding k // 2; explicit tap loop."""
    B, H, W, c = img.shape
    k = weight.shape[-1]
    r = k // 2
    out = bias.expand(B, H, W, c).clone()
    for dy in range(k):
        for dx in range(k):
            oy, ox = dy - r, dx - r  # output (y, x) reads input (y + oy, x + ox)
            y0, y1 = max(0, -oy), min(H, H - oy)
            x0, x1 = max(0, -ox), min(W, W - ox)
            if y0 >= y1 or x0 >= x1:
                continue
            out[:, y0:y1, x0:x1] = out[:, y0:y1, x0:x1] + weight[:, 0, dy, dx] * img[:, y0 + oy:y1 + oy, x0 + ox:x1 + ox]
    return out


def mix_conv_gelu_naive(x, H, W, weight3, bias3, weight5, bias5):
    B, N, R = x.shape
    split = weight3.shape[0]
    img = x.reshape(B, H, W, R)
    pre = torch.cat([depthwise_conv_naive(img[..., :split], weight3, bias3),
                     depthwise_conv_naive(img[..., split:], weight5, bias5)], dim=-1)
    gelu = 0.5 * pre * (1 + torch.erf(pre / 2 ** 0.5))
    return gelu.reshape(B, N, R)


def attention_to_mask_naive(q, k, v, num_heads, scale):
    B, Q, C = q.shape
    d = C // num_heads
    outs, logits_sum = [], 0
    for h in range(num_heads):
        ch = slice(h * d, (h + 1) * d)
        logits = q[..., ch] @ k[..., ch].transpose(1, 2) * scale
        outs.append(torch.softmax(logits, dim=-1) @ v[..., ch])
        logits_sum = logits_sum + logits
    return torch.cat(outs, dim=-1), logits_sum / num_heads


def hlg_windows_naive(H, W, dilated):
    """Each window's pixel list [(y, x) or None for padding] in token order, windows in window order."""
    nh, nw = -(-H // 7), -(-W // 7)
    windows = []
    for a in range(nh):
        for b in range(nw):
            pixels = []
            for i in range(7):
                for j in range(7):
                    y, x = (nh * i + a, nw * j + b) if dilated else (7 * a + i, 7 * b + j)
                    pixels.append((y, x) if y < H and x < W else None)
            windows.append(pixels)
    return windows


def hlg_local_attention_naive(q, v, H, W, dilated, bias, scale):
    """Per window and head: softmax over the window's real pixels of scale q_i . q_j + bias[h, i, j]."""
    B, N, C = q.shape
    heads = bias.shape[0]
    d = C // heads
    out = torch.zeros_like(q)
    for pixels in hlg_windows_naive(H, W, dilated):
        real = [(t, p[0] * W + p[1]) for t, p in enumerate(pixels) if p is not None]
        slots = [t for t, _ in real]
        rows = torch.tensor([n for _, n in real])
        for h in range(heads):
            ch = slice(h * d, (h + 1) * d)
            Q = q[:, rows, ch]
            logits = Q @ Q.transpose(1, 2) * scale + bias[h][slots][:, slots]
            out[:, rows, ch] = logits.softmax(-1) @ v[:, rows, ch]
    return out


def hlg_global_attention_naive(q, k, v, H, W, bias_table, scale, key_grid=None):
    """Pixel (y, x) against key m at cell (m // gw, m % gw) of the key grid (default: the map), bias entry
    (y - u + gh - 1) * (2gw - 1) + (x - v + gw - 1)."""
    gh, gw = key_grid or (H, W)
    B, N, C = q.shape
    M = k.shape[1]
    heads = bias_table.shape[0]
    d = C // heads
    bias = torch.empty(heads, N, M, dtype=bias_table.dtype)
    for n in range(N):
        for m in range(M):
            dy, dx = n // W - m // gw, n % W - m % gw
            bias[:, n, m] = bias_table[:, (dy + gh - 1) * (2 * gw - 1) + dx + gw - 1]
    out = torch.zeros_like(q)
    for h in range(heads):
        ch = slice(h * d, (h + 1) * d)
        out[:, :, ch] = (q[:, :, ch] @ k[:, :, ch].transpose(1, 2) * scale + bias[h]).softmax(-1) @ v[:, :, ch]
    return out
