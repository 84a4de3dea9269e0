"""Public entry point of the MixCFN convolution: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch, _triton_common
from hrvit_kernels.ops.mixcfn.checks import OP, check_inputs
from hrvit_kernels.ops.mixcfn.registration import mix_conv_gelu_cpp, mix_conv_gelu_triton
from hrvit_kernels.ops.mixcfn.reference import mix_conv_gelu_reference

AVAILABLE = {"triton": _triton_common.available, "cpp": _cpu_common.available, "reference": _dispatch.always}
KERNELS = {"triton": mix_conv_gelu_triton, "cpp": mix_conv_gelu_cpp}


@_checks.quiet_checks
def mix_conv_gelu(x: torch.Tensor, hw, weight3: torch.Tensor, bias3: torch.Tensor,
                  weight5: torch.Tensor, bias5: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """GELU(concat(dwconv3x3(first R//2 channels), dwconv5x5(the rest))) on row-major tokens.

    x: (B, N, R) with N = H*W; weight3 (R//2, 1, 3, 3), bias3 (R//2,), weight5 (R - R//2, 1, 5, 5),
    bias5 (R - R//2,). Zero padding at the image borders, exact (erf) GELU. Returns (B, N, R).
    """
    x, weight3, bias3, weight5, bias5 = _autocast.lower_precision(x, weight3, bias3, weight5, bias5)
    H, W = check_inputs(x, hw, weight3, bias3, weight5, bias5)
    backend = _dispatch.choose_backend(OP, backend, (x, weight3, bias3, weight5, bias5), AVAILABLE)
    if backend == "reference":
        return mix_conv_gelu_reference(x, (H, W), weight3, bias3, weight5, bias5)
    return _dispatch.run_kernel(KERNELS[backend], x, H, W, weight3, bias3, weight5, bias5)
