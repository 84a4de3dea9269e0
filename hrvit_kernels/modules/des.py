"""HRViT's diversity-enhanced shortcut: a Kronecker-factored linear C -> C."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def des_factors(dim: int) -> tuple[int, int]:
    """(k, p) with k * p = dim: p = 2 ** (e - e // 2), e = floor(log2(dim))."""
    e = int(math.floor(math.log2(dim)))
    p = 2 ** (e - e // 2)
    if dim % p:
        raise ValueError(f"DES: dim = {dim} is not divisible by its right factor p = {p}")
    return dim // p, p


class DES(nn.Module):
    """View x as (..., k, p); Linear(p, p); swap the last two axes; GELU; Linear(k, k); swap back."""

    def __init__(self, dim: int):
        super().__init__()
        self.k, self.p = des_factors(dim)
        self.proj_right = nn.Linear(self.p, self.p)
        self.proj_left = nn.Linear(self.k, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = self.proj_right(x.reshape(*shape[:-1], self.k, self.p)).transpose(-1, -2)
        x = self.proj_left(F.gelu(x)).transpose(-1, -2)
        return x.reshape(shape)

    def extra_repr(self) -> str:
        return f"k={self.k}, p={self.p}"
