"""Input checks of the GELU MLP, shared by the public function and the registered custom op: every message
names the argument, and no call reaches a kernel with sizes that would make it write past a buffer's end."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks

OP = "gelu_mlp"


def check_inputs(x, weight1, bias1, weight2, bias2, op: str = OP) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: argument 'x' must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError(f"{op}: argument 'x' must have at least 1 dimension (..., features), got a scalar")
    C = x.shape[-1]
    _checks.check_tensor(op, "weight1", weight1, 2)
    hidden = weight1.shape[0]
    _checks.check_shape(op, "weight1", weight1, (hidden, C), f"(hidden, {C}): x has {C} features")
    _checks.check_tensor(op, "weight2", weight2, 2)
    _checks.check_shape(op, "weight2", weight2, (weight2.shape[0], hidden), f"(out_features, {hidden})")
    named = [("x", x), ("weight1", weight1), ("weight2", weight2)]
    for name, t, size in (("bias1", bias1, hidden), ("bias2", bias2, weight2.shape[0])):
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (size,))
        named.append((name, t))
    _checks.check_same(op, named)
