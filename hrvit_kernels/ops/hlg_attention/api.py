"""Public entry points of HLG's local and global attention: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch, _triton_common
from hrvit_kernels.ops.hlg_attention.checks import GLOBAL_OP, LOCAL_OP, check_global_inputs, check_local_inputs
from hrvit_kernels.ops.hlg_attention.reference import (hlg_global_attention_reference,
                                                       hlg_local_attention_reference)
from hrvit_kernels.ops.hlg_attention.registration import (hlg_global_attention_cpp, hlg_global_attention_triton,
                                                          hlg_local_attention_cpp, hlg_local_attention_triton)

AVAILABLE = {"triton": _triton_common.available, "cpp": _cpu_common.available, "reference": _dispatch.always}
LOCAL_KERNELS = {"triton": hlg_local_attention_triton, "cpp": hlg_local_attention_cpp}
GLOBAL_KERNELS = {"triton": hlg_global_attention_triton, "cpp": hlg_global_attention_cpp}


@_checks.quiet_checks
def hlg_local_attention(q: torch.Tensor, v: torch.Tensor, hw, dilated: bool, bias: torch.Tensor,
                        scale: float | None = None, backend: str = "auto") -> torch.Tensor:
    """HLG's local window attention on tokens (B, H*W, C), the query also serving as the key.

    7 x 7 windows of the map padded bottom/right to multiples of 7 windows' sides: contiguous windows, or
    (``dilated``) windows whose tokens are ceil(H/7) rows and ceil(W/7) columns apart; padded keys are
    masked. ``bias``: (heads, 49, 49), added to every window's logits of that head; heads have C / heads
    channels; ``scale`` defaults to (C / heads) ** -0.5. Returns (B, H*W, C).
    """
    q, v = _autocast.lower_precision(q, v)
    check_local_inputs(q, v, hw, dilated, bias, scale)
    scale = (q.shape[-1] // bias.shape[0]) ** -0.5 if scale is None else float(scale)
    backend = _dispatch.choose_backend(LOCAL_OP, backend, (q, v), AVAILABLE)
    if backend == "reference":
        return hlg_local_attention_reference(q, v, tuple(hw), dilated, bias, scale)
    return _dispatch.run_kernel(LOCAL_KERNELS[backend], q, v, hw[0], hw[1], dilated, bias, scale)[0]


@_checks.quiet_checks
def hlg_global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw, bias_table: torch.Tensor,
                         scale: float | None = None, key_grid=None, backend: str = "auto") -> torch.Tensor:
    """Every pixel's query (B, H*W, C) against M keys and values (B, M, C), key m at cell (u, v) = (m // gw,
    m % gw) of the key grid ``key_grid`` = (gh, gw), by default the map (H, W).

    ``bias_table``: (heads, T); query (y, x) and key m add entry (y - u + gh - 1) * (2gw - 1) + (x - v + gw - 1):
    with keys on the map, T = (2H-1)*(2W-1) and the entry is the bias of their offset (dy, dx), row-major
    (HLG's backbone); SETR-HLG's head passes its window grid. ``scale`` defaults to (C / heads) ** -0.5.
    Returns (B, H*W, C).
    """
    q, k, v = _autocast.lower_precision(q, k, v)
    h, w, gh, gw = check_global_inputs(q, k, v, hw, bias_table, scale, key_grid)
    scale = (q.shape[-1] // bias_table.shape[0]) ** -0.5 if scale is None else float(scale)
    backend = _dispatch.choose_backend(GLOBAL_OP, backend, (q, k, v), AVAILABLE)
    if backend == "reference":
        return hlg_global_attention_reference(q, k, v, (h, w), bias_table, scale, (gh, gw))
    return _dispatch.run_kernel(GLOBAL_KERNELS[backend], q, k, v, h, w, gh, gw, bias_table, scale)[0]
