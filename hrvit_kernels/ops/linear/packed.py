"""Matrix products with a weight packed once in oneDNN's blocked layout, for CPU inference.

PyTorch's CPU product (MKL's sgemm here) lays the weight out anew on every call and, on the 2-core AVX-512
development machine, ran HLG's products of 49-784 tokens at 60-85 G multiply-adds/s; oneDNN with a weight
packed once ran the same products at 103-112 (``benchmarks/README.md``). A packed copy is kept per weight and
dtype while the weight is unchanged (its version counter says so) and goes with the weight. Only weights that
are parameters, or views of one, are packed: a temporary weight would be packed on every call.
"""
from __future__ import annotations

import platform

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

# oneDNN's call costs about 25 us: below this many multiply-adds PyTorch's own product is faster.
MIN_MULTIPLY_ADDS = 8_000_000
# Measured on x86-64 only; oneDNN's speed on other CPUs is unknown here.
_X86 = platform.machine().lower() in ("x86_64", "amd64")
DTYPES = (torch.float32, torch.bfloat16)

# {parameter: {(dtype, offset, shape, strides): ((version, address), packed weight)}}
_kept = WeakIdKeyDictionary()


def _supported() -> bool:
    return (_X86 and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> bool:
    """Whether ``x @ weight^T (+ bias)`` in ``dtype`` goes through a packed weight: CPU tensors of one dtype,
    a parameter's weight (not an inference tensor, whose version is not tracked), enough multiply-adds."""
    base = weight if weight._base is None else weight._base
    rows = x.numel() // max(x.shape[-1], 1)
    return (x.device.type == "cpu" and dtype in DTYPES and x.dtype == weight.dtype
            and (bias is None or bias.dtype == weight.dtype) and isinstance(base, nn.Parameter)
            and not base.is_inference() and rows * weight.shape[0] * weight.shape[1] >= MIN_MULTIPLY_ADDS
            and _supported())


def packed_weight(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weight in ``dtype``, packed for oneDNN; kept while the weight is unchanged: the same version (in-place
    changes) and address (module.to() and friends swap a parameter's data)."""
    base = weight if weight._base is None else weight._base
    key = (dtype, weight.storage_offset(), tuple(weight.shape), weight.stride())
    packs = _kept.setdefault(base, {})
    version = (base._version, weight.data_ptr())
    kept = packs.get(key)
    if kept is None or kept[0] != version:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype).contiguous(), 1)
        packs[key] = kept = (version, packed)
    return kept[1]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed in ``dtype`` with the packed weight (the output in ``dtype``)."""
    rows = x.reshape(-1, x.shape[-1]).to(dtype)
    out = torch.ops.mkldnn._linear_pointwise(rows, packed_weight(weight, dtype),
                                             None if bias is None else bias.to(dtype), "none", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])


def clear() -> None:
    """Drop every kept packed weight (they also go with their weights)."""
    _kept.clear()
