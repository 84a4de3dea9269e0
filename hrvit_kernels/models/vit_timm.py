"""SETR's plain ViT, with timm's parameter names, and the MLA neck of SETR-MLA.

``SETRVisionTransformer``: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}``; no final
norm; position embeddings resized bilinearly to the token grid. ``with_cp=True``: gradient checkpointing
per block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.models._init import init_transformer_weights
from hrvit_kernels.models._vit_common import resize_pos_embed, run_block
from hrvit_kernels.modules import DropPath
from hrvit_kernels.ops._checks import quiet_under_tracing


class _TimmAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class _TimmMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TimmBlock(nn.Module):
    """timm's pre-norm ViT block: x + DropPath(Attn(norm1 x)), x + DropPath(Mlp(norm2 x)); eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _TimmAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _TimmMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _TimmPatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class MLANeck(nn.Module):
    """SETR-MLA's aggregation: per level 1x1 conv + BN + ReLU to 256, top-down running sums from the
    deepest level, then 3x3 conv + BN + ReLU on each sum. Levels are named p2 (shallowest) .. p5."""

    def __init__(self, in_channels: int = 1024, channels: int = 256):
        super().__init__()
        for p in (2, 3, 4, 5):
            setattr(self, f"mla_p{p}_1x1", _conv_bn_relu(in_channels, channels, 1))
        for p in (2, 3, 4, 5):
            setattr(self, f"mla_p{p}", _conv_bn_relu(channels, channels, 3))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        projected = [getattr(self, f"mla_p{p}_1x1")(m) for p, m in zip((2, 3, 4, 5), maps)]
        sums, running = [], None
        for proj in reversed(projected):
            running = proj if running is None else running + proj
            sums.append(running)
        return [getattr(self, f"mla_p{p}")(s) for p, s in zip((2, 3, 4, 5), reversed(sums))]


class SETRVisionTransformer(nn.Module):
    """timm-style ViT for SETR: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}``; no final
    norm; position embeddings resized bilinearly to the token grid. forward(x) returns the (B, C, h, w)
    maps of ``out_indices`` (class token removed). With ``mla=True`` (SETR-MLA) the class token is dropped
    before the first block, each of ``out_indices`` gets its own LayerNorm (``norm_{i}``) and the MLA neck
    (``mla``) turns the four maps into the aggregated 256-channel levels."""

    def __init__(self, img_size: int = 512, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.1, out_indices=(9, 14, 19, 23), mla: bool = False,
                 mla_channels: int = 256, with_cp: bool = False):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"SETRVisionTransformer: embed_dim = {embed_dim} is not divisible by num_heads = {num_heads}")
        if any(not 0 <= i < depth for i in out_indices) or (mla and len(out_indices) != 4):
            raise ValueError(f"SETRVisionTransformer: out_indices {tuple(out_indices)} must lie in [0, {depth})"
                             + (" and be four levels for MLA" if mla else ""))
        self.patch_size, self.out_indices, self.mla_enabled = patch_size, tuple(out_indices), mla
        self.with_cp = with_cp
        grid = img_size // patch_size
        self.patch_embed = _TimmPatchEmbed(in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(TimmBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i]) for i in range(depth))
        if mla:
            self.mla = MLANeck(embed_dim, mla_channels)
            for i in range(len(out_indices)):
                setattr(self, f"norm_{i}", nn.LayerNorm(embed_dim, eps=1e-6))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_transformer_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with quiet_under_tracing():
            if x.dim() != 4 or min(x.shape[-2:]) < self.patch_size:
                raise ValueError(f"SETRVisionTransformer: input must be (B, C, H, W) with H, W >= "
                                 f"{self.patch_size}, got shape {tuple(x.shape)}")
        tokens, grid = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + resize_pos_embed(self.pos_embed, grid, "bilinear")
        extra = 1
        if self.mla_enabled:
            tokens, extra = tokens[:, 1:], 0
        outs = []
        for i, block in enumerate(self.blocks):
            tokens = run_block(block, self.with_cp, tokens)
            if i in self.out_indices:
                level = tokens[:, extra:]
                if self.mla_enabled:
                    level = getattr(self, f"norm_{len(outs)}")(level)
                outs.append(level.transpose(1, 2).reshape(level.shape[0], -1, *grid))
        return self.mla(outs) if self.mla_enabled else outs
