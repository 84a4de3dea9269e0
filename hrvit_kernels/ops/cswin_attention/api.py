"""Public entry point of the stripe attention: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch, _triton_common
from hrvit_kernels.ops.cswin_attention.checks import OP, check_inputs, effective_stripe_width
from hrvit_kernels.ops.cswin_attention.reference import cswin_attention_reference
from hrvit_kernels.ops.cswin_attention.registration import cswin_attention_cpp, cswin_attention_triton

AVAILABLE = {"triton": _triton_common.available, "cpp": _cpu_common.available, "reference": _dispatch.always}
KERNELS = {"triton": cswin_attention_triton, "cpp": cswin_attention_cpp}


@_checks.quiet_checks
def cswin_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw, stripe_width: int,
                    head_dim: int, scale: float | None = None, backend: str = "auto") -> torch.Tensor:
    """Cross-shaped window attention on row-major tokens.

    q, k, v: (B, N, C) with N = H*W. Channels [0, C/2) attend within horizontal stripes of
    ``stripe_width`` rows, channels [C/2, C) within vertical stripes of ``stripe_width`` columns; the
    last stripe is shorter when the side is not a multiple of the stripe width. Each half has
    (C/2) // head_dim heads (one head of C/2 channels when C/2 < head_dim); ``scale`` defaults to the
    used head dim ** -0.5. ``k`` may be the same tensor as ``v``. Returns (B, N, C).
    """
    q, k, v = _autocast.lower_precision(q, k, v)
    hw, heads, used = check_inputs(q, k, v, hw, stripe_width, head_dim, scale)
    scale = used ** -0.5 if scale is None else float(scale)
    stripe_width = effective_stripe_width(stripe_width, *hw)
    backend = _dispatch.choose_backend(OP, backend, (q, k, v), AVAILABLE)
    if backend == "reference":
        return cswin_attention_reference(q, k, v, hw, stripe_width, heads, scale)
    # k is v (HRViT): pass it once, so the kernel reads it once and returns one gradient.
    out, _ = _dispatch.run_kernel(KERNELS[backend], q, k, None if k is v else v, *hw, stripe_width, heads,
                                  used, scale)
    return out
