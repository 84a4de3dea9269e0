"""Reference of HRViT's diversity-enhanced shortcut (DES): the release's factored sequence."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kronecker_mlp_reference(x: torch.Tensor, k: int, p: int, right_weight, right_bias, left_weight,
                            left_bias) -> torch.Tensor:
    """View x as (..., k, p); Linear(p, p); swap the last two axes; GELU; Linear(k, k); swap back."""
    shape = x.shape
    x = F.linear(x.reshape(*shape[:-1], k, p), right_weight, right_bias).transpose(-1, -2)
    x = F.linear(F.gelu(x), left_weight, left_bias).transpose(-1, -2)
    return x.reshape(shape)
