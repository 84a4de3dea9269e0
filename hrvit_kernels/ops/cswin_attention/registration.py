"""torch.library custom ops of the C++ stripe-attention kernels: fake functions, autograd and FLOP
formula, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work.

``v`` is optional: None means k is v (HRViT), which the kernels read once and whose gradient they
return as one tensor."""
from __future__ import annotations

from typing import Optional

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import CUSTOM_OP_MACS
from hrvit_kernels.ops.cswin_attention import cpu


@torch.library.custom_op("hrvit::cswin_attention_cpp", mutates_args=())
def cswin_attention_cpp(q: Tensor, k: Tensor, v: Optional[Tensor], H: int, W: int, stripe_width: int,
                        heads: int, head_dim: int, scale: float) -> tuple[Tensor, Tensor]:
    return cpu.forward(q, k, v, H, W, stripe_width, heads, head_dim, scale)


@cswin_attention_cpp.register_fake
def _(q, k, v, H, W, stripe_width, heads, head_dim, scale):
    B, N, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((B, 2 * heads, N), dtype=torch.float32)


@torch.library.custom_op("hrvit::cswin_attention_cpp_bwd", mutates_args=())
def cswin_attention_cpp_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Optional[Tensor], out: Tensor,
                            lse: Tensor, H: int, W: int, stripe_width: int, heads: int, head_dim: int,
                            scale: float) -> list[Tensor]:
    grads = cpu.backward(grad_out, q, k, v, out, lse, H, W, stripe_width, heads, head_dim, scale)
    return [g for g in grads if g is not None]


@cswin_attention_cpp_bwd.register_fake
def _(grad_out, q, k, v, out, lse, H, W, stripe_width, heads, head_dim, scale):
    return [q.new_empty(q.shape) for _ in range(2 if v is None else 3)]


def _setup_context(ctx, inputs, output):
    q, k, v, *ctx.config = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    grads = torch.ops.hrvit.cswin_attention_cpp_bwd(grad_out, q, k, v, out, lse, *ctx.config)
    grad_v = grads[2] if v is not None else None
    return (grads[0], grads[1], grad_v) + (None,) * len(ctx.config)


cswin_attention_cpp.register_autograd(_backward, setup_context=_setup_context)


def stripe_attention_macs(batch: int, H: int, W: int, channels: int, stripe_width: int) -> int:
    """Multiply-adds of q k^T and p v over the stripes' real tokens (shorter last stripe, no padding)."""
    total = 0
    for rows, cols in ((H, W), (W, H)):
        for start in range(0, rows, stripe_width):
            length = min(stripe_width, rows - start) * cols
            total += 2 * length * length * (channels // 2)
    return batch * total


def _macs(args, out=None) -> int:
    q, H, W, stripe_width = args[0], args[3], args[4], args[5]
    return stripe_attention_macs(q.shape[0], H, W, q.shape[2], stripe_width)


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.cswin_attention_cpp)
def _flops(q_shape, k_shape, v_shape, H, W, stripe_width, *args, **kwargs) -> int:
    return 2 * stripe_attention_macs(q_shape[0], H, W, q_shape[2], stripe_width)


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.cswin_attention_cpp_bwd)
def _flops_bwd(grad_shape, q_shape, k_shape, v_shape, out_shape, lse_shape, H, W, stripe_width,
               *args, **kwargs) -> int:
    # Recomputed q k^T, then dV, dP, dQ and dK: five products of the forward's size each half.
    return 5 * stripe_attention_macs(q_shape[0], H, W, q_shape[2], stripe_width)


CUSTOM_OP_MACS[torch.ops.hrvit.cswin_attention_cpp.default] = _macs
