"""Public entry point of resize-sum: validate, then dispatch."""
from __future__ import annotations

from typing import Sequence

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.resize_sum.checks import OP, check_inputs
from hrvit_kernels.ops.resize_sum.reference import resize_sum_reference
from hrvit_kernels.ops.resize_sum.registration import resize_sum_cpp

AVAILABLE = {"cpp": _cpu_common.available, "reference": _dispatch.always}


@_checks.quiet_checks
def resize_sum(maps: Sequence[torch.Tensor], size: tuple[int, int], backend: str = "auto") -> torch.Tensor:
    """Sum of the bilinear resizes (half-pixel centres, ``F.interpolate(mode="bilinear",
    align_corners=False)``) of NCHW maps with equal batch and channels to ``size`` = (H, W).

    A map already at ``size`` is added as it is. Backends: "cpp" (one pass over the output) and
    "reference"; "auto" takes C++ on CPU and the reference (PyTorch's own kernels) elsewhere.
    """
    if isinstance(maps, (list, tuple)):
        maps = _autocast.promote(maps)
    height, width = check_inputs(maps, size)
    backend = _dispatch.choose_backend(OP, backend, tuple(maps), AVAILABLE)
    if backend == "reference":
        return resize_sum_reference(list(maps), (height, width))
    return _dispatch.run_kernel(resize_sum_cpp, list(maps), height, width)
