"""SegViT's attention-to-mask (ATM) modules with the release's parameter names."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.modules.mha import multi_head_attention
from hrvit_kernels.ops import attention_to_mask


class ATMAttention(nn.Module):
    """Cross-attention from class queries to spatial tokens that also returns the mask logits: the mean
    over heads of the pre-softmax scaled logits. Runs on ``hrvit_kernels.ops.attention_to_mask``; in
    training with attention dropout the probabilities are dropped out as in the release, which the
    fused op cannot do, so that case runs the same math unfused."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.1):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.q(query), self.k(memory), self.v(memory)
        if self.training and self.attn_drop > 0:
            B, N, C = q.shape
            split = lambda t: t.unflatten(-1, (self.num_heads, C // self.num_heads)).transpose(1, 2)  # noqa: E731
            logits = split(q) @ split(k).transpose(-1, -2) * (C // self.num_heads) ** -0.5
            attn = F.dropout(logits.softmax(-1), self.attn_drop, training=True)
            out, mask_logits = (attn @ split(v)).transpose(1, 2).reshape(B, N, C), logits.mean(1)
        else:
            out, mask_logits = attention_to_mask(q, k, v, self.num_heads)
        return self.proj(out), mask_logits


class ATMDecoderLayer(nn.Module):
    """Post-norm decoder layer: self-attention, add & norm, ATM cross-attention, add & norm, ReLU FFN,
    add & norm (dropout 0.1). Returns the queries and the ATM mask logits."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.multihead_attn = ATMAttention(dim, num_heads, attn_drop=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        queries = self.norm1(queries + self.dropout(multi_head_attention(self.self_attn, queries, queries)))
        attended, mask_logits = self.multihead_attn(queries, memory)
        queries = self.norm2(queries + self.dropout(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(queries))))
        return self.norm3(queries + self.dropout(ffn)), mask_logits


class TransformerDecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer's post-norm math and parameter names (self_attn, multihead_attn,
    linear1, linear2, norm1..3), with both attentions through scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = self.norm1(queries + self.dropout(multi_head_attention(self.self_attn, queries, queries)))
        queries = self.norm2(queries + self.dropout(multi_head_attention(self.multihead_attn, queries, memory)))
        return self.norm3(queries + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(queries))))))


class TransformerDecoder(nn.Module):
    """A stack of standard decoder layers (``layers``), as nn.TransformerDecoder without a final norm."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, dim_feedforward: int):
        super().__init__()
        self.layers = nn.ModuleList(TransformerDecoderLayer(dim, num_heads, dim_feedforward) for _ in range(num_layers))

    def forward(self, queries, memory):
        for layer in self.layers:
            queries = layer(queries, memory)
        return queries


class ATMDecoder(nn.Module):
    """A stack of ATM decoder layers; returns every layer's (queries, mask logits)."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, dim_feedforward: int):
        super().__init__()
        self.layers = nn.ModuleList(ATMDecoderLayer(dim, num_heads, dim_feedforward) for _ in range(num_layers))

    def forward(self, queries, memory) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outs = []
        for layer in self.layers:
            queries, mask_logits = layer(queries, memory)
            outs.append((queries, mask_logits))
        return outs
