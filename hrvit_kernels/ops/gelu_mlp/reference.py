"""Plain-PyTorch GELU MLP, Linear -> exact GELU -> Linear: the oracle and the fallback."""
from __future__ import annotations

import torch.nn.functional as F


def gelu_mlp_reference(x, weight1, bias1, weight2, bias2):
    return F.linear(F.gelu(F.linear(x, weight1, bias1)), weight2, bias2)
