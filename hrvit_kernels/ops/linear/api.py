"""A linear layer whose CPU inference form, for products of few tokens, multiplies by a weight packed once
(``ops/_packed_products.py``); otherwise, while a gradient is recorded or anything traces, compiles or counts
the call, and on the reference backend, F.linear."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks, _dispatch
from hrvit_kernels.ops import _packed_products as packed
from hrvit_kernels.ops.linear.reference import linear_reference

OP = "linear"


def _check_inputs(x, weight, bias) -> None:
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        features = x.shape[-1] if x.dim() else "in_features"
        raise ValueError(f"{OP}: argument 'weight' must have shape (out_features, {features}) for x of shape "
                         f"{tuple(x.shape)} (its last dimension holds the input features), got {tuple(weight.shape)}")
    _checks.check_optional_bias(OP, bias, weight.shape[0])


@_checks.quiet_checks
def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           backend: str = "auto") -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x (..., in_features), weight (out_features, in_features).

    For fp32 inference on x86 CPUs (no gradient recorded, nothing tracing, compiling or counting the call, no
    autocast), a product of a parameter's weight with at most ``_packed_products.MAX_ROWS`` tokens and at least
    ``MIN_MULTIPLY_ADDS`` multiplies by a copy of the weight packed once in oneDNN's layout, kept while the
    weight is unchanged (the weight's size again in memory): HLG's last stage at 224, 49 tokens, runs its
    projections about 1.1x faster. Results equal F.linear's to fp32 rounding (another summation order).
    ``backend="reference"`` (or that process-wide choice) is always F.linear."""
    _check_inputs(x, weight, bias)
    if _dispatch.reference_requested(OP, backend) or not _dispatch.nothing_records_calls() \
            or torch.is_autocast_enabled(x.device.type):
        return linear_reference(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    if not packed.applies(rows, weight, bias):
        return linear_reference(x, weight, bias)
    return packed.linear(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])
