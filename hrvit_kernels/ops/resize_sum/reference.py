"""Plain-PyTorch sum of bilinear resizes: the oracle and the fallback."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_sum_reference(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """sum_i F.interpolate(maps[i], size, mode="bilinear", align_corners=False), a new tensor; a map
    already at ``size`` is added as it is."""
    total = None
    for x in maps:
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if total is None:
            total = x.clone() if x is maps[0] else x  # a fresh result: never the caller's tensor
        else:
            total.add_(x)
    return total
