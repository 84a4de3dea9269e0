"""An eval-mode BatchNorm as the per-channel affine map it is, for the layers that fold or fuse it."""
from __future__ import annotations

import torch
from torch import nn


def eval_affine(norm: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with norm(x) = x * scale + shift per channel, from its running statistics."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale
