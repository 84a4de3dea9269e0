"""torch.library custom ops of the attention-to-mask kernels (``hrvit::attention_to_mask_cpp`` and
``hrvit::attention_to_mask_triton``, each with a ``_bwd`` op): fake functions, autograd and FLOP
formula, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work. Both
backends' kernel modules expose the same ``forward`` and ``backward``."""
from __future__ import annotations

import importlib
from typing import Optional

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.attention_to_mask import checks

# Backend -> module with forward/backward; triton's is imported on first use only.
KERNEL_MODULES = {"cpp": "hrvit_kernels.ops.attention_to_mask.cpu",
                  "triton": "hrvit_kernels.ops.attention_to_mask.triton_kernels"}


def attention_to_mask_macs(batch: int, queries: int, keys: int, channels: int) -> int:
    """Multiply-adds of q k^T and p v over all heads (the head mean is element-wise)."""
    return 2 * batch * queries * keys * channels


def _define(backend: str):
    def kernels():
        return importlib.import_module(KERNEL_MODULES[backend])

    # The ops check their own arguments too: torch.ops exposes them without the public function.
    op = f"hrvit::attention_to_mask_{backend}"

    @torch.library.custom_op(op, mutates_args=())
    def fwd(q: Tensor, k: Tensor, v: Tensor, num_heads: int, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        checks.check_inputs(q, k, v, num_heads, scale, op)
        _checks.check_kernel_device(op, backend, "q", q)
        return kernels().forward(q, k, v, num_heads, scale)

    @fwd.register_fake
    def _(q, k, v, num_heads, scale):
        checks.check_inputs(q, k, v, num_heads, scale, op)
        B, Q, _ = q.shape
        return (q.new_empty(q.shape), q.new_empty((B, Q, k.shape[1])),
                q.new_empty((B, num_heads, Q), dtype=torch.float32))

    @torch.library.custom_op(op + "_bwd", mutates_args=())
    def bwd(grad_out: Optional[Tensor], grad_mask: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor, out: Tensor,
            lse: Tensor, num_heads: int, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        checks.check_op_backward_inputs(op + "_bwd", grad_out, grad_mask, q, k, v, out, lse, num_heads, scale)
        _checks.check_kernel_device(op + "_bwd", backend, "q", q)
        return kernels().backward(grad_out, grad_mask, q, k, v, out, lse, num_heads, scale)

    @bwd.register_fake
    def _(grad_out, grad_mask, q, k, v, out, lse, num_heads, scale):
        checks.check_op_backward_inputs(op + "_bwd", grad_out, grad_mask, q, k, v, out, lse, num_heads, scale)
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)

    def setup_context(ctx, inputs, output):
        q, k, v, ctx.num_heads, ctx.scale = inputs
        out, _, lse = output
        ctx.save_for_backward(q, k, v, out, lse)

    def backward(ctx, grad_out, grad_mask, grad_lse):
        q, k, v, out, lse = ctx.saved_tensors
        return (*bwd(grad_out, grad_mask, q, k, v, out, lse, ctx.num_heads, ctx.scale), None, None)

    fwd.register_autograd(backward, setup_context=setup_context)

    def macs(q, k, **_) -> int:
        return attention_to_mask_macs(q[0], q[1], k[1], q[2])

    def backward_macs(q, k, **_) -> int:
        # Recomputed q k^T, then dV, dP, dQ and dK: five products, each half of the forward's two.
        return 5 * (attention_to_mask_macs(q[0], q[1], k[1], q[2]) // 2)

    register_op_macs(getattr(torch.ops.hrvit, f"attention_to_mask_{backend}"), macs,
                     getattr(torch.ops.hrvit, f"attention_to_mask_{backend}_bwd"), backward_macs)
    return fwd


attention_to_mask_cpp = _define("cpp")
attention_to_mask_triton = _define("triton")
