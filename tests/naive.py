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
