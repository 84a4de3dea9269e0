"""Public entry point of attention-to-mask: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch, _triton_common
from hrvit_kernels.ops.attention_to_mask.checks import OP, check_inputs
from hrvit_kernels.ops.attention_to_mask.reference import attention_to_mask_reference
from hrvit_kernels.ops.attention_to_mask.registration import attention_to_mask_cpp, attention_to_mask_triton

AVAILABLE = {"triton": _triton_common.available, "cpp": _cpu_common.available, "reference": _dispatch.always}
KERNELS = {"triton": attention_to_mask_triton, "cpp": attention_to_mask_cpp}


@_checks.quiet_checks
def attention_to_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
                      scale: float | None = None, backend: str = "auto"):
    """Multi-head cross-attention that also returns the head-averaged pre-softmax logits.

    q: (B, Q, C); k, v: (B, L, C). Returns (out (B, Q, C), mask_logits (B, Q, L)); ``scale`` defaults
    to (C / num_heads) ** -0.5.
    """
    q, k, v = _autocast.lower_precision(q, k, v)
    check_inputs(q, k, v, num_heads, scale)
    scale = (q.shape[-1] // num_heads) ** -0.5 if scale is None else float(scale)
    backend = _dispatch.choose_backend(OP, backend, (q, k, v), AVAILABLE)
    if backend == "reference":
        return attention_to_mask_reference(q, k, v, num_heads, scale)
    out, mask_logits, _ = _dispatch.run_kernel(KERNELS[backend], q, k, v, num_heads, scale)
    return out, mask_logits
