"""Input checks of resize-sum, shared by the public function and the registered custom ops (which
torch.ops also exposes): every message names the argument, and no call reaches a kernel with sizes
that would make it read or write past a tensor's end."""
from __future__ import annotations

from typing import Sequence

import torch

from hrvit_kernels.ops import _checks

OP = "resize_sum"


def check_inputs(maps, size, op: str = OP) -> tuple[int, int]:
    if isinstance(maps, torch.Tensor) or not isinstance(maps, Sequence) or len(maps) == 0:
        raise TypeError(f"{op}: argument 'maps' must be a non-empty list of tensors, got "
                        f"{type(maps).__name__}")
    named = [(f"maps[{i}]", _checks.check_tensor(op, f"maps[{i}]", m, 4)) for i, m in enumerate(maps)]
    _checks.check_same(op, named)
    B, C = maps[0].shape[:2]
    for name, m in named:
        if m.shape[:2] != (B, C) or m.shape[2] < 1 or m.shape[3] < 1:
            raise ValueError(f"{op}: argument '{name}' must have shape (B={B}, C={C}, h >= 1, w >= 1) "
                             f"like maps[0], got {tuple(m.shape)}")
    height, width = _checks.check_size_pair(op, "size", size)
    if not isinstance(height, torch.SymInt) and not isinstance(width, torch.SymInt):
        _checks.check_output_fits(op, "size", (B, C, height, width), maps[0])
    return height, width


def check_op_backward_inputs(op: str, grad, map_height, map_width) -> None:
    """The adjoint of one resize: grad (B, C, H, W) to a (B, C, map_height, map_width) gradient."""
    _checks.check_tensor(op, "grad", grad, 4)
    if grad.shape[2] < 1 or grad.shape[3] < 1:
        raise ValueError(f"{op}: argument 'grad' must have shape (B, C, H >= 1, W >= 1), got "
                         f"{tuple(grad.shape)}")
    map_height, map_width = _checks.check_size_pair(op, "(map_height, map_width)", (map_height, map_width))
    if not isinstance(map_height, torch.SymInt) and not isinstance(map_width, torch.SymInt):
        _checks.check_output_fits(op, "(map_height, map_width)", (*grad.shape[:2], map_height, map_width), grad)
