"""SegViT's plain ViT, with mmseg 0.x semantics and parameter names.

``VisionTransformer``: patch embedding ``patch_embed.projection``, ``layers.{i}`` with ``ln1``,
``attn.attn`` (packed in_proj), ``ln2`` and ``ffn.layers``; LayerNorm eps 1e-6; the class token is
prepended for the position embedding and dropped before layer 0 when ``with_cls_token=False``; position
embeddings are resized (bicubic by default) to the input's token grid. ``shrink_idx`` enables
SegViT-Shrunk's query-based down-sampling at that layer. ``with_cp=True``: gradient checkpointing per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.models._init import init_transformer_weights
from hrvit_kernels.models._vit_common import resize_pos_embed, run_block
from hrvit_kernels.modules import DropPath
from hrvit_kernels.modules.mha import multi_head_attention
from hrvit_kernels.ops._checks import quiet_under_tracing


class _AttentionWrapper(nn.Module):
    """mmcv's MultiheadAttention naming: the torch module lives at ``.attn``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, bias=qkv_bias, batch_first=True)

    def forward(self, query, key_value):
        return multi_head_attention(self.attn, query, key_value)


class _FFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)),
                                    nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x):
        return self.layers(x)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: x + DropPath(MHA(LN1 x)), then x + DropPath(FFN(LN2 x)). With ``shrink`` the
    queries (and the residual) are the top-left token of every 2 x 2, keys and values all tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 shrink: bool = False):
        super().__init__()
        self.shrink = shrink
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _AttentionWrapper(dim, num_heads, qkv_bias)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = _FFN(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]):
        normed = self.ln1(x)
        if self.shrink:
            h, w = grid
            if h % 2 or w % 2:
                raise ValueError(f"VisionTransformer: query-based down-sampling needs an even token grid, "
                                 f"got {h} x {w}")
            def subsample(t):  # noqa: E306
                return t.unflatten(1, (h, w))[:, ::2, ::2].flatten(1, 2)
            x = subsample(x) + self.drop_path(self.attn(subsample(normed), normed))
            grid = (h // 2, w // 2)
        else:
            x = x + self.drop_path(self.attn(normed, normed))
        return x + self.drop_path(self.ffn(self.ln2(x))), grid


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed_dims: int, patch_size: int):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size)

    def forward(self, x):
        x = self.projection(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


class VisionTransformer(nn.Module):
    """mmseg-style ViT; forward(x) returns the (B, C, h, w) maps of the layers in ``out_indices``."""

    def __init__(self, img_size: int = 640, patch_size: int = 16, in_channels: int = 3, embed_dims: int = 1024,
                 num_layers: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.3, with_cls_token: bool = False, final_norm: bool = False,
                 out_indices=(7, 15, 23), interpolate_mode: str = "bicubic", shrink_idx: int | None = None,
                 with_cp: bool = False):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"VisionTransformer: embed_dims = {embed_dims} is not divisible by num_heads = {num_heads}")
        if any(not 0 <= i < num_layers for i in out_indices):
            raise ValueError(f"VisionTransformer: out_indices {tuple(out_indices)} must lie in [0, {num_layers})")
        self.img_size, self.patch_size, self.with_cls_token = img_size, patch_size, with_cls_token
        self.out_indices, self.interpolate_mode, self.final_norm = tuple(out_indices), interpolate_mode, final_norm
        self.with_cp = with_cp
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dims))
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        rates = torch.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, mlp_ratio, qkv_bias, rates[i], shrink=(i == shrink_idx))
            for i in range(num_layers))
        if final_norm:
            self.ln1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_transformer_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with quiet_under_tracing():
            if x.dim() != 4 or x.shape[-1] < self.patch_size or x.shape[-2] < self.patch_size:
                raise ValueError(f"VisionTransformer: input must be (B, C, H, W) with H, W >= {self.patch_size}, "
                                 f"got shape {tuple(x.shape)}")
        tokens, grid = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + resize_pos_embed(self.pos_embed, grid, self.interpolate_mode)
        if not self.with_cls_token:
            tokens = tokens[:, 1:]
        outs = []
        for i, layer in enumerate(self.layers):
            if self.with_cls_token and layer.shrink:
                raise ValueError("VisionTransformer: shrink_idx needs with_cls_token=False")
            tokens, grid = run_block(layer, self.with_cp, tokens, grid)
            if i in self.out_indices:
                out = self.ln1(tokens) if (self.final_norm and i == len(self.layers) - 1) else tokens
                out = out[:, 1:] if self.with_cls_token else out
                outs.append(out.transpose(1, 2).reshape(out.shape[0], -1, *grid))
        return outs
