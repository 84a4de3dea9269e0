"""SETR-HLG's decode head (HLGUPHead) and its auxiliary FCN head, with the release's parameter names and
constructor keywords.

HLGUPHead: every level resized to the stride-4 map and concatenated, a 3x3 conv + BN + ReLU to ``channels``,
``depth`` local-global transformer layers (even layers: contiguous 7 x 7 windows on the map padded to a
multiple of 7; odd layers: ``sr_ratio``**2 groups by residue (y mod r, x mod r) on the map padded to a multiple
of r), then dropout, a 1x1 classifier and x4 bilinear up-sampling. In a layer, the padded map is smoothed (as
in the backbone, replacing the residual stream), attends within its groups (padding included, as the release
computes), is cropped back, and every pixel attends to the groups' mean tokens; one attention module serves
both steps. The global bias reproduces the release's index arithmetic (a row stride that does not match its
table's, so a deterministic but not geometric function of the offset).
The release up-samples to 4 x the map's width on both sides; here to 4 x (height, width), the same for the
square inputs it was built for.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.models.heads._release_keywords import check_release_keywords
from hrvit_kernels.modules.batchnorm import conv_bn_act, fused_inference
from hrvit_kernels.modules.hlg import HEAD_DIM, DynamicPositionBias, SpatialSmoothing
from hrvit_kernels.ops import gelu_mlp, hlg_global_attention, resize_sum
from hrvit_kernels.ops.hlg_attention.checks import WINDOW

LN_EPS = 1e-5


class _Attention(nn.Module):
    """q (no bias), kv (no bias; keys first), ``norm`` for window tokens, position bias ``pos``, ``proj``."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = channels // HEAD_DIM
        self.pos = DynamicPositionBias(channels // 16, self.heads)
        self.q = nn.Linear(channels, channels, bias=False)
        self.kv = nn.Linear(channels, 2 * channels, bias=False)
        self.norm = nn.LayerNorm(channels, eps=LN_EPS)
        self.proj = nn.Linear(channels, channels)

    def local(self, groups: torch.Tensor, grid) -> torch.Tensor:
        """Attention within each group (B, G, n, C) of a grid[0] x grid[1] layout, with the grid's bias."""
        B, G, n, c = groups.shape
        split = lambda t: t.reshape(B * G, n, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        k, v = self.kv(groups).chunk(2, -1)
        # Four-dimensional inputs and mask: PyTorch's fused CPU attention takes those (five dimensions fall
        # back to its unfused form, measured 2x slower here).
        bias = self.pos.grid_bias(grid).to(groups.dtype)[None]
        out = F.scaled_dot_product_attention(split(self.q(groups)), split(k), split(v), attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(B, G, n, c))

    def global_(self, x: torch.Tensor, window_tokens: torch.Tensor, hw, cells) -> torch.Tensor:
        """Every pixel (B, H*W, C) against the window tokens (B, cells, C), with the release's lookup of the
        bias of an H x W map for a cells[0] x cells[1] grid."""
        k, v = self.kv(self.norm(window_tokens)).chunk(2, -1)
        return self.proj(hlg_global_attention(self.q(x), k, v, hw, self.pos.table(hw), key_grid=cells))


class _DecodeLayer(nn.Module):
    def __init__(self, channels: int, dilated: bool, interval: int):
        super().__init__()
        self.dilated, self.interval = dilated, interval
        self.norm0 = nn.LayerNorm(channels, eps=LN_EPS)
        self.norm1 = nn.LayerNorm(channels, eps=LN_EPS)
        self.attn = _Attention(channels)
        self.norm2 = nn.LayerNorm(channels, eps=LN_EPS)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(channels, 4 * channels)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * channels, channels)
        self.spatial_smooth = SpatialSmoothing(channels)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """fc1, GELU, fc2: one op for inference."""
        if not fused_inference():
            return self.mlp(x)
        return gelu_mlp(x, self.mlp.fc1.weight, self.mlp.fc1.bias, self.mlp.fc2.weight, self.mlp.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        step = self.interval if self.dilated else WINDOW
        hp, wp = step * math.ceil(H / step), step * math.ceil(W / step)
        x = F.pad(x, (0, wp - W, 0, hp - H))
        smoothed = self.spatial_smooth.residual_gelu(x).permute(0, 2, 3, 1)  # (B, Hp, Wp, C)
        r = self.interval
        if self.dilated:  # group (y mod r, x mod r) holds a (Hp/r) x (Wp/r) grid
            grid, cells = (hp // r, wp // r), (r, r)
            groups = smoothed.reshape(B, hp // r, r, wp // r, r, C).permute(0, 2, 4, 1, 3, 5)
        else:
            grid, cells = (WINDOW, WINDOW), (hp // WINDOW, wp // WINDOW)
            groups = smoothed.reshape(B, hp // WINDOW, WINDOW, wp // WINDOW, WINDOW, C).permute(0, 1, 3, 2, 4, 5)
        groups = groups.reshape(B, cells[0] * cells[1], grid[0] * grid[1], C)
        groups = groups + self.attn.local(self.norm0(groups), grid)
        window_tokens = groups.mean(2)
        groups = groups.reshape(B, cells[0], cells[1], grid[0], grid[1], C)
        if self.dilated:
            y = groups.permute(0, 3, 1, 4, 2, 5)
        else:
            y = groups.permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(B, hp, wp, C)[:, :H, :W].reshape(B, H * W, C)
        y = y + self.attn.global_(self.norm1(y), window_tokens, (H, W), cells)
        y = y + self._mlp(self.norm2(y))
        return y.transpose(1, 2).reshape(B, C, H, W)


class HLGUPHead(nn.Module):
    """SETR-HLG's decode head (keys ``conv_seg``, ``conv_0``, ``decode_transformer.{i}``, ``syncbn_fc_0``)."""

    def __init__(self, in_channels=(96, 192, 384, 768), channels: int = 512, num_classes: int = 150,
                 in_index=(0, 1, 2, 3), depth: int = 2, sr_ratio: int = 8, dropout_ratio: float = 0.1, **release):
        super().__init__()
        check_release_keywords("HLGUPHead", release, frozenset({"num_heads", "img_size", "embed_dim"}))
        self.in_index = list(in_index)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.conv_0 = nn.Conv2d(sum(in_channels), channels, 3, padding=1)
        self.decode_transformer = nn.ModuleList(
            _DecodeLayer(channels, dilated=i % 2 == 1, interval=sr_ratio) for i in range(depth))
        self.syncbn_fc_0 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout2d(dropout_ratio)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        maps = [features[i] for i in self.in_index]
        size = maps[0].shape[-2:]
        x = torch.cat([m if m.shape[-2:] == size else resize_sum([m], size) for m in maps], 1)
        x = conv_bn_act(self.conv_0, self.syncbn_fc_0, x, "relu")
        for layer in self.decode_transformer:
            x = layer(x)
        x = self.conv_seg(self.dropout(x))
        return resize_sum([x], (4 * size[0], 4 * size[1]))  # bilinear, half-pixel centres


class FCNHead(nn.Module):
    """mmseg's FCNHead as SETR-HLG's auxiliary head: ``num_convs`` 3x3 conv + BN + ReLU (``convs.{i}``),
    dropout, a 1x1 classifier (``conv_seg``), on level ``in_index``."""

    def __init__(self, in_channels: int = 384, channels: int = 256, num_classes: int = 150, in_index: int = 2,
                 num_convs: int = 1, kernel_size: int = 3, concat_input: bool = False, dropout_ratio: float = 0.1,
                 **release):
        super().__init__()
        check_release_keywords("FCNHead", release)
        if concat_input:
            raise ValueError("FCNHead: concat_input=True is not used by SETR-HLG's configs and not built here")
        self.in_index = in_index
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        convs = []
        for i in range(num_convs):
            block = nn.Module()
            block.conv = nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size,
                                   padding=kernel_size // 2, bias=False)
            block.bn = nn.BatchNorm2d(channels)
            convs.append(block)
        self.convs = nn.ModuleList(convs)
        self.dropout = nn.Dropout2d(dropout_ratio)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        for block in self.convs:
            x = conv_bn_act(block.conv, block.bn, x, "relu")
        return self.conv_seg(self.dropout(x))
