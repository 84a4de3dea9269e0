"""HRViT's mixed-scale convolutional FFN (release parameter names)."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.ops import mix_conv_gelu


class MixConv(nn.Module):
    """Holds the two depthwise convolutions: 3x3 on the first half of the channels, 5x5 on the rest."""

    def __init__(self, channels: int):
        super().__init__()
        split = channels // 2
        self.conv_3 = nn.Conv2d(split, split, 3, padding=1, groups=split)
        self.conv_5 = nn.Conv2d(channels - split, channels - split, 5, padding=2, groups=channels - split)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Tokens (B, H*W, R) -> GELU of the mixed-scale convolution, tokens (B, H*W, R)."""
        return mix_conv_gelu(x, (H, W), self.conv_3.weight, self.conv_3.bias, self.conv_5.weight,
                             self.conv_5.bias)


class MixCFN(nn.Module):
    """fc1 -> mixed-scale depthwise conv + GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.conv = MixConv(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.fc2(self.conv(self.fc1(x), H, W))
