"""torch.library custom ops of the stripe-attention kernels (``hrvit::cswin_attention_cpp`` and
``hrvit::cswin_attention_triton``, each with a ``_bwd`` op): fake functions, autograd and FLOP
formula, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work.

``v`` is optional: None means k is v (HRViT), which the kernels read once and whose gradient they
return as one tensor. Both backends' kernel modules expose the same ``forward`` and ``backward``.
"""
from __future__ import annotations

import importlib
from typing import Optional

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.cswin_attention import checks

# Backend -> module with forward/backward; triton's is imported on first use only.
KERNEL_MODULES = {"cpp": "hrvit_kernels.ops.cswin_attention.cpu",
                  "triton": "hrvit_kernels.ops.cswin_attention.triton_kernels"}


def stripe_attention_macs(batch: int, H: int, W: int, channels: int, stripe_width: int) -> int:
    """Multiply-adds of q k^T and p v over the stripes' real tokens (shorter last stripe, no padding)."""
    total = 0
    for rows, cols in ((H, W), (W, H)):
        for start in range(0, rows, stripe_width):
            length = min(stripe_width, rows - start) * cols
            total += 2 * length * length * (channels // 2)
    return batch * total


def _define(backend: str):
    def kernels():
        return importlib.import_module(KERNEL_MODULES[backend])

    # The ops check their own arguments too: torch.ops exposes them without the public function.
    op = f"hrvit::cswin_attention_{backend}"

    @torch.library.custom_op(op, mutates_args=())
    def fwd(q: Tensor, k: Tensor, v: Optional[Tensor], H: int, W: int, stripe_width: int, heads: int,
            head_dim: int, scale: float) -> tuple[Tensor, Tensor]:
        checks.check_op_inputs(op, q, k, v, H, W, stripe_width, heads, head_dim, scale)
        _checks.check_kernel_device(op, backend, "q", q)
        stripe_width = checks.effective_stripe_width(stripe_width, H, W)
        return kernels().forward(q, k, v, H, W, stripe_width, heads, head_dim, scale)

    @fwd.register_fake
    def _(q, k, v, H, W, stripe_width, heads, head_dim, scale):
        checks.check_op_inputs(op, q, k, v, H, W, stripe_width, heads, head_dim, scale)
        B, N, _ = q.shape
        return q.new_empty(q.shape), q.new_empty((B, 2 * heads, N), dtype=torch.float32)

    @torch.library.custom_op(op + "_bwd", mutates_args=())
    def bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Optional[Tensor], out: Tensor, lse: Tensor, H: int,
            W: int, stripe_width: int, heads: int, head_dim: int, scale: float) -> list[Tensor]:
        checks.check_op_backward_inputs(op + "_bwd", grad_out, q, k, v, out, lse, H, W, stripe_width, heads,
                                        head_dim, scale)
        _checks.check_kernel_device(op + "_bwd", backend, "q", q)
        stripe_width = checks.effective_stripe_width(stripe_width, H, W)
        grads = kernels().backward(grad_out, q, k, v, out, lse, H, W, stripe_width, heads, head_dim, scale)
        return [g for g in grads if g is not None]

    @bwd.register_fake
    def _(grad_out, q, k, v, out, lse, H, W, stripe_width, heads, head_dim, scale):
        checks.check_op_backward_inputs(op + "_bwd", grad_out, q, k, v, out, lse, H, W, stripe_width, heads,
                                        head_dim, scale)
        return [q.new_empty(q.shape) for _ in range(2 if v is None else 3)]

    def setup_context(ctx, inputs, output):
        q, k, v, *ctx.config = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse)

    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse = ctx.saved_tensors
        grads = bwd(grad_out, q, k, v, out, lse, *ctx.config)
        grad_v = grads[2] if v is not None else None
        return (grads[0], grads[1], grad_v) + (None,) * len(ctx.config)

    fwd.register_autograd(backward, setup_context=setup_context)

    def macs(q, H, W, stripe_width, **_) -> int:
        return stripe_attention_macs(q[0], H, W, q[2], stripe_width)

    def backward_macs(q, H, W, stripe_width, **_) -> int:
        # Recomputed q k^T, then dV, dP, dQ and dK: five products, each half of the forward's two.
        return 5 * (stripe_attention_macs(q[0], H, W, q[2], stripe_width) // 2)

    register_op_macs(getattr(torch.ops.hrvit, f"cswin_attention_{backend}"), macs,
                     getattr(torch.ops.hrvit, f"cswin_attention_{backend}_bwd"), backward_macs)
    return fwd


cswin_attention_cpp = _define("cpp")
cswin_attention_triton = _define("triton")
