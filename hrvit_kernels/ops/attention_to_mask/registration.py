"""torch.library custom ops of the C++ attention-to-mask kernels: fake functions, autograd and FLOP
formula, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work."""
from __future__ import annotations

from typing import Optional

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import CUSTOM_OP_MACS
from hrvit_kernels.ops.attention_to_mask import cpu


@torch.library.custom_op("hrvit::attention_to_mask_cpp", mutates_args=())
def attention_to_mask_cpp(q: Tensor, k: Tensor, v: Tensor, num_heads: int, scale: float
                          ) -> tuple[Tensor, Tensor, Tensor]:
    return cpu.forward(q, k, v, num_heads, scale)


@attention_to_mask_cpp.register_fake
def _(q, k, v, num_heads, scale):
    B, Q, _ = q.shape
    return (q.new_empty(q.shape), q.new_empty((B, Q, k.shape[1])),
            q.new_empty((B, num_heads, Q), dtype=torch.float32))


@torch.library.custom_op("hrvit::attention_to_mask_cpp_bwd", mutates_args=())
def attention_to_mask_cpp_bwd(grad_out: Optional[Tensor], grad_mask: Optional[Tensor], q: Tensor, k: Tensor,
                              v: Tensor, out: Tensor, lse: Tensor, num_heads: int, scale: float
                              ) -> tuple[Tensor, Tensor, Tensor]:
    return cpu.backward(grad_out, grad_mask, q, k, v, out, lse, num_heads, scale)


@attention_to_mask_cpp_bwd.register_fake
def _(grad_out, grad_mask, q, k, v, out, lse, num_heads, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, ctx.num_heads, ctx.scale = inputs
    out, _, lse = output
    ctx.save_for_backward(q, k, v, out, lse)


def _backward(ctx, grad_out, grad_mask, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    grads = torch.ops.hrvit.attention_to_mask_cpp_bwd(grad_out, grad_mask, q, k, v, out, lse,
                                                      ctx.num_heads, ctx.scale)
    return (*grads, None, None)


attention_to_mask_cpp.register_autograd(_backward, setup_context=_setup_context)


def attention_to_mask_macs(batch: int, queries: int, keys: int, channels: int) -> int:
    """Multiply-adds of q k^T and p v over all heads (the head mean is element-wise)."""
    return 2 * batch * queries * keys * channels


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.attention_to_mask_cpp)
def _flops(q_shape, k_shape, *args, **kwargs) -> int:
    return 2 * attention_to_mask_macs(q_shape[0], q_shape[1], k_shape[1], q_shape[2])


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.attention_to_mask_cpp_bwd)
def _flops_bwd(grad_shape, grad_mask_shape, q_shape, k_shape, *args, **kwargs) -> int:
    # Recomputed q k^T, then dV, dP, dQ and dK: five products of the forward's size.
    return 5 * attention_to_mask_macs(q_shape[0], q_shape[1], k_shape[1], q_shape[2])


CUSTOM_OP_MACS[torch.ops.hrvit.attention_to_mask_cpp.default] = (
    lambda args, out: attention_to_mask_macs(args[0].shape[0], args[0].shape[1], args[1].shape[1],
                                             args[0].shape[2]))
