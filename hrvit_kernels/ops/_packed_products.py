"""Matrix products with a weight packed once in oneDNN's blocked layout, for inference products of few tokens
(the linear op, HLG's conv blocks).

PyTorch's CPU product (MKL's sgemm here) lays the weight out anew on every call. Inside HLG's forward, where
every weight comes from memory once, packing made the MLPs of 49-196 tokens 1.1-1.3x faster on the 2-core
AVX-512 development machine; with the weight in cache (``benchmarks/packed_products.py``) the packed product
is 1.2-1.3x faster at 49 rows and level at 196 (``benchmarks/README.md``). A packed copy is kept per weight
while the weight is unchanged and goes with the weight (``ops/_kept.py``). Only weights that are parameters,
or views of one, are packed: a temporary weight would be packed on every call.
"""
from __future__ import annotations

import functools
import platform

import torch
from torch import nn

from hrvit_kernels.ops._kept import kept

# oneDNN's call costs 15-25 us more: below this many multiply-adds PyTorch's own product is faster. Above this
# many rows the BLAS keeps up (HLG's blocks at 224 in turns: 49-196 rows 1.1-1.4x faster packed, 784 level,
# 3136 slower).
MIN_MULTIPLY_ADDS = 8_000_000
MAX_ROWS = 512
# Measured on x86-64 only; oneDNN's speed on other CPUs is unknown here.
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def supported() -> bool:
    """Whether weights are packed here at all: x86-64, oneDNN built in and switched on, and its packing ops
    (private to PyTorch: Inductor's CPU path uses them) working as this module calls them."""
    return _X86 and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled and _ops_work()


@functools.lru_cache(maxsize=None)
def _ops_work() -> bool:
    """One small packed product against F.linear: False (products stay PyTorch's) where the ops are missing or
    behave otherwise in this PyTorch version."""
    try:
        with torch.no_grad():
            x, w, b = torch.randn(5, 24), torch.randn(16, 24), torch.randn(16)
            out = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, 1), b, "none",
                                                     [], "")
        return out.shape == (5, 16) and torch.allclose(out, torch.nn.functional.linear(x, w, b), atol=1e-4)
    except (AttributeError, RuntimeError, TypeError):
        return False


def _base(weight: torch.Tensor) -> torch.Tensor:
    return weight if weight._base is None else weight._base


def applies(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether ``rows @ weight^T (+ bias)`` (2-D rows) goes through a packed weight: fp32 CPU tensors, a
    parameter's weight (not an inference tensor, whose version is not tracked), few rows, enough multiply-adds."""
    base = _base(weight)
    return (rows.device.type == "cpu" and rows.dtype == weight.dtype == torch.float32
            and (bias is None or bias.dtype == torch.float32) and isinstance(base, nn.Parameter)
            and not base.is_inference() and rows.shape[0] <= MAX_ROWS
            and rows.shape[0] * weight.shape[0] * weight.shape[1] >= MIN_MULTIPLY_ADDS and supported())


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight packed for oneDNN, kept while the weight (or the parameter it is a view of) is unchanged."""
    base = _base(weight)
    return kept(base, ("packed", weight.storage_offset(), tuple(weight.shape), weight.stride()), (base,),
                lambda: torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 1))


def linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``rows @ weight^T (+ bias)`` for 2-D fp32 rows with the packed weight (where :func:`applies`)."""
    return torch.ops.mkldnn._linear_pointwise(rows.contiguous(), packed_weight(weight), bias, "none", [], "")
