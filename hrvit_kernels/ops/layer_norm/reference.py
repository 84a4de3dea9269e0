"""Plain-PyTorch LayerNorm over the last dimension after an optional residual sum: the oracle and the fallback."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def add_layer_norm_reference(x, residual, weight, bias, eps: float, out_dtype: torch.dtype) -> list[torch.Tensor]:
    """[x + residual, LayerNorm(x + residual) in out_dtype]; [LayerNorm(x) in out_dtype] without a residual. The
    norm is computed in the wider of the sum's dtype and out_dtype, then converted once."""
    total = x if residual is None else x + residual
    dtype = torch.promote_types(total.dtype, out_dtype)
    normed = F.layer_norm(total.to(dtype), (total.shape[-1],), weight.to(dtype), bias.to(dtype), eps).to(out_dtype)
    return [normed] if residual is None else [total, normed]
