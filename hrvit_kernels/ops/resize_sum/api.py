"""Public entry point of resize-sum: validate, then dispatch."""
from __future__ import annotations

from typing import Sequence

import torch

from hrvit_kernels.ops import _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.resize_sum.reference import resize_sum_reference
from hrvit_kernels.ops.resize_sum.registration import resize_sum_cpp

OP = "resize_sum"
AVAILABLE = {"cpp": _cpu_common.available, "reference": _dispatch.always}


def _validate(maps, size) -> tuple[int, int]:
    if isinstance(maps, torch.Tensor) or not isinstance(maps, Sequence) or len(maps) == 0:
        raise TypeError(f"{OP}: argument 'maps' must be a non-empty list of tensors, got "
                        f"{type(maps).__name__}")
    named = [(f"maps[{i}]", _checks.check_tensor(OP, f"maps[{i}]", m, 4)) for i, m in enumerate(maps)]
    _checks.check_same(OP, named)
    B, C = maps[0].shape[:2]
    for name, m in named:
        if m.shape[:2] != (B, C) or m.shape[2] < 1 or m.shape[3] < 1:
            raise ValueError(f"{OP}: argument '{name}' must have shape (B={B}, C={C}, h >= 1, w >= 1) "
                             f"like maps[0], got {tuple(m.shape)}")
    return _checks.check_size_pair(OP, "size", size)


def resize_sum(maps: Sequence[torch.Tensor], size: tuple[int, int], backend: str = "auto") -> torch.Tensor:
    """Sum of the bilinear resizes (half-pixel centres, ``F.interpolate(mode="bilinear",
    align_corners=False)``) of NCHW maps with equal batch and channels to ``size`` = (H, W).

    A map already at ``size`` is added as it is. Backends: "cpp" (one pass over the output) and
    "reference"; "auto" takes C++ on CPU and the reference (PyTorch's own kernels) elsewhere.
    """
    height, width = _validate(maps, size)
    backend = _dispatch.choose_backend(OP, backend, tuple(maps), AVAILABLE)
    if backend == "reference":
        return resize_sum_reference(list(maps), (height, width))
    return resize_sum_cpp(list(maps), height, width)
