"""Public entry point of the GELU MLP: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.gelu_mlp.checks import OP, check_inputs
from hrvit_kernels.ops.gelu_mlp.reference import gelu_mlp_reference
from hrvit_kernels.ops.gelu_mlp.registration import gelu_mlp_cpp

AVAILABLE = {"cpp": _cpu_common.available, "reference": _dispatch.always}


@_checks.quiet_checks
def gelu_mlp(x: torch.Tensor, weight1: torch.Tensor, bias1: torch.Tensor, weight2: torch.Tensor,
             bias2: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``linear(GELU(linear(x, weight1, bias1)), weight2, bias2)`` over the last dimension of x (exact GELU).

    weight1 (hidden, C), bias1 (hidden,), weight2 (out_features, hidden), bias2 (out_features,). Backends:
    "cpp" (the products by PyTorch's BLAS, bias + GELU in place on a kept hidden buffer) and "reference";
    "auto" takes C++ on CPU and the reference elsewhere.
    """
    tensors = _autocast.lower_precision(x, weight1, bias1, weight2, bias2)
    check_inputs(*tensors)
    backend = _dispatch.choose_backend(OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return gelu_mlp_reference(*tensors)
    return _dispatch.run_kernel(gelu_mlp_cpp, *tensors)
