"""A linear layer whose CPU inference form multiplies by a weight packed once (``packed.py``); elsewhere, while
a gradient is recorded or anything traces or counts the call, and on the reference backend, F.linear."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks, _dispatch
from hrvit_kernels.ops.linear import packed
from hrvit_kernels.ops.linear.reference import linear_reference

OP = "linear"


def _check_inputs(x, weight, bias) -> None:
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"{OP}: argument 'weight' must have shape (out_features, {x.shape[-1] if x.dim() else '?'})"
                         f" for x of shape {tuple(x.shape)} (its last dimension is the input features), got "
                         f"{tuple(weight.shape)}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"{OP}: argument 'bias' must have shape ({weight.shape[0]},) or be None, got {got}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype F.linear would multiply in: CPU autocast's, where it is on, else x's."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


@_checks.quiet_checks
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           backend: str = "auto") -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x (..., in_features), weight (out_features, in_features).

    On x86 CPUs, where no gradient is recorded and nothing traces, compiles or counts the call, a product of at
    least ``packed.MIN_MULTIPLY_ADDS`` in fp32 or bf16 (CPU autocast's dtype where it is on) multiplies by a
    copy of the weight packed once in oneDNN's layout, kept while the weight is unchanged: the weight's size
    again in memory, for 1.1-1.7x faster products at HLG's sizes. Results equal F.linear's to fp32 rounding
    (another summation order). ``backend="reference"`` (or that process-wide choice) is always F.linear."""
    _check_inputs(x, weight, bias)
    if _dispatch.reference_requested(OP, backend) or not _dispatch.nothing_records_calls():
        return linear_reference(x, weight, bias)
    dtype = _compute_dtype(x)
    if not packed.applies(x, weight, bias, dtype):
        return linear_reference(x, weight, bias)
    return packed.linear(x, weight, bias, dtype)
