"""nn.Linear through the package's linear op (same parameters, keys and initialisation)."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.ops import linear


class Linear(nn.Linear):
    """An nn.Linear whose fp32 CPU inference over few tokens multiplies by a weight packed once (see
    :func:`hrvit_kernels.ops.linear`); training, tracing, autocast and other devices get F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
