"""torch.library custom op of the C++ depthwise MLP (``hrvit::depthwise_mlp_cpp``, with a ``_bwd`` op): fake
functions, autograd and multiply-add count, so that autograd, torch.compile(fullgraph=True), opcheck and
FlopCounterMode work. The backward op is PyTorch's operations (cpu.backward): the fused forward is for
inference."""
from __future__ import annotations

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.depthwise_mlp import checks, cpu

OP = "hrvit::depthwise_mlp_cpp"
AFFINE_MACS_PER_ELEMENT = 2  # fvcore's charge for an eval-mode BatchNorm (see hrvit_kernels.flops)


@torch.library.custom_op(OP, mutates_args=())
def depthwise_mlp_cpp(x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor, shift1: Tensor, weight_dw: Tensor,
                      bias_dw: Tensor, scale2: Tensor, shift2: Tensor, weight2: Tensor, bias2: Tensor,
                      stride: int) -> Tensor:
    # The op checks its own arguments too: torch.ops exposes it without the public function.
    checks.check_inputs(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                        stride, OP)
    _checks.check_kernel_device(OP, "cpp", "x", x)
    return cpu.forward(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                       stride)


@depthwise_mlp_cpp.register_fake
def _(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2, stride):
    out_h, out_w = checks.check_inputs(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2,
                                       weight2, bias2, stride, OP)
    return x.new_empty((x.shape[0], out_h, out_w, weight2.shape[0])).permute(0, 3, 1, 2)  # channels-last, as cpu


@torch.library.custom_op(OP + "_bwd", mutates_args=())
def depthwise_mlp_cpp_bwd(grad_out: Tensor, x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor,
                          shift1: Tensor, weight_dw: Tensor, bias_dw: Tensor, scale2: Tensor, shift2: Tensor,
                          weight2: Tensor, bias2: Tensor, stride: int) -> list[Tensor]:
    inputs = (x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2)
    out_h, out_w = checks.check_inputs(*inputs, stride, OP + "_bwd")
    _checks.check_tensor(OP + "_bwd", "grad_out", grad_out, 4)
    _checks.check_shape(OP + "_bwd", "grad_out", grad_out, (x.shape[0], weight2.shape[0], out_h, out_w),
                        "the forward's output shape")
    return cpu.backward(grad_out, *inputs, stride)


@depthwise_mlp_cpp_bwd.register_fake
def _(grad_out, x, *parameters_and_stride):
    return [t.new_empty(t.shape) for t in (x, *parameters_and_stride[:-1])]


def _setup_context(ctx, inputs, output):
    *tensors, ctx.stride = inputs
    ctx.save_for_backward(*tensors)


def _backward(ctx, grad_out):
    return (*depthwise_mlp_cpp_bwd(grad_out, *ctx.saved_tensors, ctx.stride), None)


depthwise_mlp_cpp.register_autograd(_backward, setup_context=_setup_context)


def depthwise_mlp_macs(x, weight1, weight2, stride, **_) -> int:
    """The three convolutions and fvcore's charge for the two affines (eval-mode BatchNorms); GELU is free."""
    B, _, H, W = x
    hidden, out_channels = weight1[0], weight2[0]
    inputs, outputs = B * H * W, B * ((H - 1) // stride + 1) * ((W - 1) // stride + 1)
    return (inputs * hidden * (weight1[1] + AFFINE_MACS_PER_ELEMENT)
            + outputs * hidden * (9 + AFFINE_MACS_PER_ELEMENT) + outputs * hidden * out_channels)


def _backward_macs(**arguments) -> int:
    # The recomputed forward, then input and weight gradients: three forwards' worth.
    return 3 * depthwise_mlp_macs(**arguments)


register_op_macs(torch.ops.hrvit.depthwise_mlp_cpp, depthwise_mlp_macs, torch.ops.hrvit.depthwise_mlp_cpp_bwd,
                 _backward_macs)
