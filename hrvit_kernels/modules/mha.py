"""nn.MultiheadAttention's math on batch-first tokens through scaled_dot_product_attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def multi_head_attention(attn: nn.MultiheadAttention, query, key_value) -> torch.Tensor:
    """nn.MultiheadAttention's math on batch-first tokens through scaled_dot_product_attention (the
    module is kept as the parameter container for checkpoint names)."""
    B, Lq, C = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split(t):
        return t.unflatten(-1, (heads, C // heads)).transpose(1, 2)

    q = split(F.linear(query, w_q, b_q))
    k, v = split(F.linear(key_value, w_k, b_k)), split(F.linear(key_value, w_v, b_v))
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    return attn.out_proj(out.transpose(1, 2).reshape(B, Lq, C))
