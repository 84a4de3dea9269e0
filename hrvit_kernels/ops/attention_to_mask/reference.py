"""Plain-PyTorch attention-to-mask (SegViT's ATM cross-attention core): the oracle and the fallback."""
from __future__ import annotations


def attention_to_mask_reference(q, k, v, num_heads: int, scale: float):
    """Returns (out (B, Q, C), mask_logits (B, Q, L)).

    out is per-head softmax(q k^T * scale) v with the heads concatenated; mask_logits is the mean over
    heads of the pre-softmax scaled logits.
    """
    B, Q, C = q.shape
    L = k.shape[1]
    head_dim = C // num_heads

    def split(t, n):  # (B, n, C) -> (B, heads, n, head_dim)
        return t.reshape(B, n, num_heads, head_dim).transpose(1, 2)

    logits = (split(q, Q) @ split(k, L).transpose(-1, -2)) * scale
    out = logits.softmax(dim=-1) @ split(v, L)
    return out.transpose(1, 2).reshape(B, Q, C), logits.mean(dim=1)
