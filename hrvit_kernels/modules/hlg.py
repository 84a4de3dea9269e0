"""HLG's dynamic position bias (``pos_local`` / ``pos_global`` / the head's ``pos``) and spatial-smoothing
bottleneck, with the release's parameter names, and the layers that run as inference ops."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.ops._kept import kept
from hrvit_kernels.modules.batchnorm import conv_bn_act, eval_affine, fused_inference
from hrvit_kernels.ops import spatial_smoothing
from hrvit_kernels.ops.hlg_attention.checks import WINDOW
from hrvit_kernels.ops.hlg_attention.reference import offset_index, offset_table

HEAD_DIM = 32  # every HLG attention has heads of 32 channels
_KEPT_SIZES = 4  # biases kept per module (sizes x kinds)


class ConvBNGELU(nn.Sequential):
    """Conv, BatchNorm, GELU (keys ``0``, ``1``) as in HLG's stem."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__(nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels),
                         nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_bn_act(self[0], self[1], x, "gelu")


class SpatialSmoothing(nn.Sequential):
    """The spatial-smoothing bottleneck R: 1x1 C -> C/4, BN, GELU, 3x3, BN, GELU, 1x1 C/4 -> C, BN (wrapped
    in a one-element Sequential, as the release's keys ``spatial_smooth.0.*`` say). ``residual_gelu(x)`` is
    GELU(x + R(x)), the map that replaces the residual stream: one op for inference."""

    def __init__(self, channels: int):
        mid = channels // 4
        super().__init__(nn.Sequential(
            nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.GELU(),
            nn.Conv2d(mid, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.GELU(),
            nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels)))

    def residual_gelu(self, x: torch.Tensor) -> torch.Tensor:
        conv1, norm1, _, conv2, norm2, _, conv3, norm3 = self[0]
        if not fused_inference(norm1, norm2, norm3):
            return F.gelu(x + self(x))
        return spatial_smoothing(x, conv1.weight.flatten(1), conv1.bias, *eval_affine(norm1), conv2.weight,
                                 conv2.bias, *eval_affine(norm2), conv3.weight.flatten(1), conv3.bias,
                                 *eval_affine(norm3))


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
        return self._kept(("table", tuple(hw)), lambda: self._table(hw))

    def _table(self, hw) -> torch.Tensor:
        offsets = offset_table(hw, self.pos_proj.weight.device, self.pos_proj.weight.dtype)
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets)))).t().contiguous()  # as the kernels read it

    def grid_bias(self, hw) -> torch.Tensor:
        """(heads, H*W, H*W): the bias between every two cells of an H x W grid."""
        return self._kept(("grid", tuple(hw)), lambda: self._table(hw)[
            :, offset_index(hw, hw[0] * hw[1], self.pos_proj.weight.device)])

    def _kept(self, key, compute) -> torch.Tensor:
        """compute(), kept between inference calls while the weights are unchanged: the bias depends only on
        them and the size, and recomputing it cost 10-15% of an HLG forward at 224. Sliding windows use one
        size, whole images a few."""
        return kept(self, key, tuple(self.parameters()), compute, limit=_KEPT_SIZES)

    def window_bias(self) -> torch.Tensor:
        """(heads, 49, 49): the bias between the tokens of a 7 x 7 window."""
        return self.grid_bias((WINDOW, WINDOW))
