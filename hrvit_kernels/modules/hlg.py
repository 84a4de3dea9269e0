"""HLG's dynamic position bias (``pos_local`` / ``pos_global`` / the head's ``pos``) and spatial-smoothing
bottleneck, with the release's parameter names."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.ops.hlg_attention.checks import WINDOW
from hrvit_kernels.ops.hlg_attention.reference import offset_index, offset_table

HEAD_DIM = 32  # every HLG attention has heads of 32 channels


def smoothing(channels: int) -> nn.Sequential:
    """The spatial-smoothing bottleneck R: 1x1 C -> C/4, BN, GELU, 3x3, BN, GELU, 1x1 C/4 -> C, BN (wrapped
    in a one-element Sequential, as the release's keys ``spatial_smooth.0.*`` say)."""
    mid = channels // 4
    return nn.Sequential(nn.Sequential(
        nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.GELU(),
        nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels)))


class DynamicPositionBias(nn.Module):
    """An MLP from a raw offset (dy, dx) to one bias per head: Linear 2 -> P (``pos_proj``), then three times
    LayerNorm (eps 1e-5) -> ReLU -> Linear (``pos1``, ``pos2``: P -> P; ``pos3``: P -> heads)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.pos_proj = nn.Linear(2, width)
        self.pos1 = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width))
        self.pos2 = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width))
        self.pos3 = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, heads))

    def table(self, hw) -> torch.Tensor:
        """(heads, (2H-1)*(2W-1)): the bias of every offset on an H x W map, row-major (dy, then dx)."""
        offsets = offset_table(hw, self.pos_proj.weight.device, self.pos_proj.weight.dtype)
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets)))).t()

    def grid_bias(self, hw) -> torch.Tensor:
        """(heads, H*W, H*W): the bias between every two cells of an H x W grid."""
        return self.table(hw)[:, offset_index(hw, hw[0] * hw[1], self.pos_proj.weight.device)]

    def window_bias(self) -> torch.Tensor:
        """(heads, 49, 49): the bias between the tokens of a 7 x 7 window."""
        return self.grid_bias((WINDOW, WINDOW))
