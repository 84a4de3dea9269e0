"""Public entry points of the LayerNorm op: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.layer_norm.checks import OP, check_inputs, sum_dtype
from hrvit_kernels.ops.layer_norm.reference import add_layer_norm_reference
from hrvit_kernels.ops.layer_norm.registration import add_layer_norm_cpp

AVAILABLE = {"cpp": _cpu_common.available, "reference": _dispatch.always}


def _run(x, residual, weight, bias, eps, out_dtype, backend) -> list[torch.Tensor]:
    if out_dtype is None and isinstance(x, torch.Tensor):  # bad arguments are named by the checks below
        out_dtype = sum_dtype(x, residual if isinstance(residual, torch.Tensor) else None)
    check_inputs(x, residual, weight, bias, eps, out_dtype)
    tensors = (x, weight, bias) if residual is None else (x, residual, weight, bias)
    backend = _dispatch.choose_backend(OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return add_layer_norm_reference(x, residual, weight, bias, eps, out_dtype)
    return _dispatch.run_kernel(add_layer_norm_cpp, x, residual, weight, bias, float(eps), out_dtype)


@_checks.quiet_checks
def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
               out_dtype: torch.dtype | None = None, backend: str = "auto") -> torch.Tensor:
    """``F.layer_norm`` over the last dimension of x, returned in ``out_dtype`` (default: x's dtype).

    A LayerNorm whose output feeds a matrix product passes the product's dtype (under autocast, the autocast
    dtype) and saves a conversion pass. x of any stride (rows with unit channel stride are read in place);
    weight and bias (C,). Backends: "cpp" (one pass per row, fp32 inside; fp32 and bf16 read and written
    directly) and "reference"; "auto" takes C++ on CPU and the reference elsewhere. Not cast by autocast.
    """
    return _run(x, None, weight, bias, eps, out_dtype, backend)[0]


@_checks.quiet_checks
def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float = 1e-5, out_dtype: torch.dtype | None = None,
                   backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x + residual, F.layer_norm(x + residual))`` over the last dimension, in one pass on CPU: a transformer
    block's residual sum and the norm that follows it. The sum has the promoted dtype of x and residual (as
    ``x + residual``); the norm ``out_dtype`` (default: the sum's dtype). See :func:`layer_norm`."""
    total, normed = _run(x, residual, weight, bias, eps, out_dtype, backend)
    return total, normed
