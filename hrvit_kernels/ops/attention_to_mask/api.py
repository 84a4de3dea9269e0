"""Public entry point of attention-to-mask: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _checks, _cpu_common, _dispatch, _triton_common
from hrvit_kernels.ops.attention_to_mask.reference import attention_to_mask_reference
from hrvit_kernels.ops.attention_to_mask.registration import attention_to_mask_cpp, attention_to_mask_triton

OP = "attention_to_mask"


def _validate(q, k, v, num_heads, scale):
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_tensor(OP, name, t, 3)
    _checks.check_same(OP, [("q", q), ("k", k), ("v", v)])
    B, Q, C = q.shape
    if k.shape[0] != B or k.shape[2] != C:
        raise ValueError(f"{OP}: argument 'k' must have shape (B={B}, L, C={C}), got {tuple(k.shape)}")
    _checks.check_shape(OP, "v", v, k.shape, "the shape of 'k', (B, L, C)")
    if Q < 1 or k.shape[1] < 1:
        raise ValueError(f"{OP}: need at least one query and one key, got Q = {Q}, L = {k.shape[1]}")
    _checks.check_positive_int(OP, "num_heads", num_heads)
    if C % num_heads:
        raise ValueError(f"{OP}: the channel count C = {C} must be divisible by num_heads = {num_heads}")
    _checks.check_scale(OP, scale)


AVAILABLE = {"triton": _triton_common.available, "cpp": _cpu_common.available, "reference": _dispatch.always}
KERNELS = {"triton": attention_to_mask_triton, "cpp": attention_to_mask_cpp}


def attention_to_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
                      scale: float | None = None, backend: str = "auto"):
    """Multi-head cross-attention that also returns the head-averaged pre-softmax logits.

    q: (B, Q, C); k, v: (B, L, C). Returns (out (B, Q, C), mask_logits (B, Q, L)); ``scale`` defaults
    to (C / num_heads) ** -0.5.
    """
    _validate(q, k, v, num_heads, scale)
    scale = (q.shape[-1] // num_heads) ** -0.5 if scale is None else float(scale)
    backend = _dispatch.choose_backend(OP, backend, (q, k, v), AVAILABLE)
    if backend == "reference":
        return attention_to_mask_reference(q, k, v, num_heads, scale)
    out, mask_logits, _ = KERNELS[backend](q, k, v, num_heads, scale)
    return out, mask_logits
