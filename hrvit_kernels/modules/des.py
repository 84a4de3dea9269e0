"""HRViT's diversity-enhanced shortcut: a Kronecker-factored linear C -> C (release parameter names)."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.modules.release_ops import use_release_ops
from hrvit_kernels.ops.des import des_factors, kronecker_mlp


class DES(nn.Module):
    """View x as (..., k, p); Linear(p, p); swap the last two axes; GELU; Linear(k, k); swap back.
    With ``release_ops`` False the op may run it as two dense linears (see ``kronecker_mlp``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.k, self.p = des_factors(dim)
        self.proj_right = nn.Linear(self.p, self.p)
        self.proj_left = nn.Linear(self.k, self.k)
        self.release_ops = use_release_ops()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right, left = self.proj_right, self.proj_left
        return kronecker_mlp(x, self.k, self.p, right.weight, right.bias, left.weight, left.bias,
                             backend="reference" if self.release_ops else "auto")

    def extra_repr(self) -> str:
        return f"k={self.k}, p={self.p}, release_ops={self.release_ops}"
