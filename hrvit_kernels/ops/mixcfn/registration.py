"""torch.library custom ops of the MixCFN kernels: fake functions, autograd and FLOP formula, so that
autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work."""
from __future__ import annotations

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import CUSTOM_OP_MACS
from hrvit_kernels.ops.mixcfn import cpu


@torch.library.custom_op("hrvit::mix_conv_gelu_cpp", mutates_args=())
def mix_conv_gelu_cpp(x: Tensor, H: int, W: int, weight3: Tensor, bias3: Tensor, weight5: Tensor,
                      bias5: Tensor) -> Tensor:
    return cpu.forward(x, H, W, weight3, bias3, weight5, bias5)


@mix_conv_gelu_cpp.register_fake
def _(x, H, W, weight3, bias3, weight5, bias5):
    return x.new_empty(x.shape)


@torch.library.custom_op("hrvit::mix_conv_gelu_cpp_bwd", mutates_args=())
def mix_conv_gelu_cpp_bwd(grad_out: Tensor, x: Tensor, H: int, W: int, weight3: Tensor,
                          bias3: Tensor, weight5: Tensor, bias5: Tensor
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return cpu.backward(grad_out, x, H, W, weight3, bias3, weight5, bias5)


@mix_conv_gelu_cpp_bwd.register_fake
def _(grad_out, x, H, W, weight3, bias3, weight5, bias5):
    return (x.new_empty(x.shape), torch.empty_like(weight3), torch.empty_like(bias3),
            torch.empty_like(weight5), torch.empty_like(bias5))


def _setup_context(ctx, inputs, output):
    x, H, W, weight3, bias3, weight5, bias5 = inputs
    ctx.save_for_backward(x, weight3, bias3, weight5, bias5)
    ctx.hw = (H, W)


def _backward(ctx, grad_out):
    x, weight3, bias3, weight5, bias5 = ctx.saved_tensors
    grads = torch.ops.hrvit.mix_conv_gelu_cpp_bwd(grad_out, x, *ctx.hw, weight3, bias3, weight5, bias5)
    grad_x, grad_w3, grad_b3, grad_w5, grad_b5 = grads
    return grad_x, None, None, grad_w3, grad_b3, grad_w5, grad_b5


mix_conv_gelu_cpp.register_autograd(_backward, setup_context=_setup_context)


def mix_conv_macs(x_shape, split: int) -> int:
    """Multiply-adds of the two depthwise convolutions (GELU is element-wise and not counted)."""
    B, N, R = x_shape
    return B * N * (9 * split + 25 * (R - split))


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.mix_conv_gelu_cpp)
def _flops(x_shape, H, W, weight3_shape, *args, **kwargs) -> int:
    return 2 * mix_conv_macs(x_shape, weight3_shape[0])


@torch.utils.flop_counter.register_flop_formula(torch.ops.hrvit.mix_conv_gelu_cpp_bwd)
def _flops_bwd(grad_shape, x_shape, H, W, weight3_shape, *args, **kwargs) -> int:
    # Recomputed forward conv, input gradient and weight gradient: three convolutions' worth.
    return 3 * 2 * mix_conv_macs(x_shape, weight3_shape[0])


CUSTOM_OP_MACS[torch.ops.hrvit.mix_conv_gelu_cpp.default] = (
    lambda args, out: mix_conv_macs(args[0].shape, args[3].shape[0]))
