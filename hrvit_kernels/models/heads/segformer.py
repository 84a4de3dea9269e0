"""The SegFormer all-MLP decode head as used with HRViT (mmseg parameter names)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.modules.batchnorm import eval_affine
from hrvit_kernels.modules.release_ops import use_release_ops
from hrvit_kernels.ops import pointwise_conv, resize_sum


class _Conv(nn.Module):
    """Holds a 1x1 convolution under the name ``conv`` (mmseg's ConvModule naming)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class SegFormerHead(nn.Module):
    """Per level a 1x1 conv to ``channels``; bilinear resize to the first level; concat; 1x1 conv +
    BN + ReLU; Dropout2d; 1x1 conv to classes. Returns logits at the first level's (stride-4) size."""

    def __init__(self, in_channels, channels: int = 256, num_classes: int = 150, dropout_ratio: float = 0.1):
        super().__init__()
        self.in_channels, self.channels, self.num_classes = list(in_channels), channels, num_classes
        self.convs = nn.ModuleList(_Conv(c, channels) for c in self.in_channels)
        self.fusion_conv = _ConvBNReLU(channels * len(self.in_channels), channels)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.release_ops = use_release_ops()

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if len(maps) != len(self.convs):
            raise ValueError(f"SegFormerHead: expected {len(self.convs)} feature maps, got {len(maps)}")
        size = maps[0].shape[-2:]
        if self.release_ops:
            outs = [F.interpolate(conv(x), size=size, mode="bilinear", align_corners=False)
                    for conv, x in zip(self.convs, maps)]
            fused = self.fusion_conv.conv(torch.cat(outs, dim=1))
            return self.conv_seg(self.dropout(F.relu(self.fusion_conv.bn(fused))))
        bn = self.fusion_conv.bn
        if bn.training:
            fused = bn(self._folded_fusion(maps, size))
        else:  # eval BatchNorm is a per-channel affine map: folded into the level convs as well
            fused = self._folded_fusion(maps, size, *eval_affine(bn))
        # In place: the stride-4 maps are the largest tensors of the head (D x H/4 x W/4).
        fused = self.dropout(F.relu(fused, inplace=True))
        return pointwise_conv(fused, self.conv_seg.weight, self.conv_seg.bias)

    def _folded_fusion(self, maps, size, out_scale=None, out_shift=None) -> torch.Tensor:
        """The fusion conv (optionally followed by the per-channel affine map out_scale * y + out_shift)
        applied before the resize, folded into each level's conv.

        1x1 convs and bilinear resizing (weights sum to 1) commute, so
        W_fuse . cat_i(resize(W_i x_i + b_i)) = sum_i resize((W_fuse,i W_i) x_i + W_fuse,i b_i):
        the same result without the 4D-channel concatenation or the 4D -> D conv at stride 4. The
        resizes and the sum are one op (on CPU one pass over the stride-4 output).
        """
        D = self.channels
        fuse = self.fusion_conv.conv.weight.reshape(D, len(self.convs), D)
        if out_scale is not None:
            fuse = fuse * out_scale[:, None, None]
        levels = []
        for i, (conv, x) in enumerate(zip(self.convs, maps)):
            w = fuse[:, i] @ conv.conv.weight.reshape(D, -1)
            b = fuse[:, i] @ conv.conv.bias
            if i == 0 and out_shift is not None:
                b = b + out_shift
            levels.append(pointwise_conv(x, w, b))
        return resize_sum(levels, size)
