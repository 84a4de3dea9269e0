"""Input checks of the LayerNorm op, shared by the public functions and the registered custom op: every message
names the argument, and no call reaches the kernel with sizes that would make it read or write past an end."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks

OP = "add_layer_norm"
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def sum_dtype(x: torch.Tensor, residual: torch.Tensor | None) -> torch.dtype:
    """The dtype of x + residual (x's without a residual): the sum's output, and the norm's by default."""
    return x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)


def check_inputs(x, residual, weight, bias, eps, out_dtype, op: str = OP) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: argument 'x' must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: argument 'x' must have a non-empty last dimension (..., features), "
                         f"got shape {tuple(x.shape)}")
    _checks.check_tensor(op, "x", x, x.dim())
    C = x.shape[-1]
    named = [("x", x)]
    if residual is not None:
        _checks.check_tensor(op, "residual", residual, x.dim())
        _checks.check_shape(op, "residual", residual, tuple(x.shape), "x's shape")
        named.append(("residual", residual))
    for name, t in (("weight", weight), ("bias", bias)):
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (C,), f"({C},): x has {C} features")
        named.append((name, t))
    _checks.check_same_device(op, named)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"{op}: argument 'eps' must be a positive number, got {eps!r}")
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"{op}: argument 'out_dtype' must be one of "
                        f"{', '.join(str(d) for d in OUT_DTYPES)}, got {out_dtype!r}")
