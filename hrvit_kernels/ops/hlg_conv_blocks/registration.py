"""torch.library custom ops of HLG's conv blocks on CPU (``hrvit::depthwise_mlp_cpp``,
``hrvit::spatial_smoothing_cpp``, ``hrvit::conv_affine_act_cpp``, ``hrvit::depthwise_conv3x3_cpp``, each with a
``_bwd`` op): fake functions, autograd and multiply-add counts, so
that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work. The backward ops are the
reference's vector-Jacobian products (_cpu_common.backward_by_reference): the fused forwards are for inference."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks, _cpu_common
from hrvit_kernels.ops.hlg_conv_blocks import checks, cpu
from hrvit_kernels.ops.hlg_conv_blocks.reference import (conv_affine_act_reference, depthwise_conv3x3_reference,
                                                        depthwise_mlp_reference, spatial_smoothing_reference)

MLP_OP, SMOOTHING_OP = "hrvit::depthwise_mlp_cpp", "hrvit::spatial_smoothing_cpp"
CONV_OP, DEPTHWISE_OP = "hrvit::conv_affine_act_cpp", "hrvit::depthwise_conv3x3_cpp"
AFFINE_MACS_PER_ELEMENT = 2  # fvcore's charge for an eval-mode BatchNorm (see hrvit_kernels.flops)


def _channels_last(t: Tensor, channels: int, height: int, width: int) -> Tensor:
    """An empty (B, channels, height, width) like t in channels-last memory, as the kernels return."""
    return t.new_empty((t.shape[0], height, width, channels)).permute(0, 3, 1, 2)


def _check_grad(op: str, grad_out, shape) -> None:
    _checks.check_tensor(op, "grad_out", grad_out, 4)
    _checks.check_shape(op, "grad_out", grad_out, shape, "the forward's output shape")


# The ops check their own arguments too: torch.ops exposes them without the public functions.
@torch.library.custom_op(MLP_OP, mutates_args=())
def depthwise_mlp_cpp(x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor, shift1: Tensor, weight_dw: Tensor,
                      bias_dw: Tensor, scale2: Tensor, shift2: Tensor, weight2: Tensor, bias2: Tensor,
                      stride: int) -> Tensor:
    checks.check_inputs(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                        stride, MLP_OP)
    _checks.check_kernel_device(MLP_OP, "cpp", "x", x)
    return cpu.depthwise_mlp(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                             stride)


@depthwise_mlp_cpp.register_fake
def _(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2, stride):
    out_h, out_w = checks.check_inputs(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2,
                                       weight2, bias2, stride, MLP_OP)
    return _channels_last(x, weight2.shape[0], out_h, out_w)


@torch.library.custom_op(MLP_OP + "_bwd", mutates_args=())
def depthwise_mlp_cpp_bwd(grad_out: Tensor, x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor,
                          shift1: Tensor, weight_dw: Tensor, bias_dw: Tensor, scale2: Tensor, shift2: Tensor,
                          weight2: Tensor, bias2: Tensor, stride: int) -> list[Tensor]:
    inputs = (x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2, stride)
    out_h, out_w = checks.check_inputs(*inputs, MLP_OP + "_bwd")
    _check_grad(MLP_OP + "_bwd", grad_out, (x.shape[0], weight2.shape[0], out_h, out_w))
    return _cpu_common.backward_by_reference(depthwise_mlp_reference, grad_out, *inputs)


@depthwise_mlp_cpp_bwd.register_fake
def _(grad_out, *inputs):
    return [t.new_empty(t.shape) for t in inputs[:-1]]


@torch.library.custom_op(SMOOTHING_OP, mutates_args=())
def spatial_smoothing_cpp(x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor, shift1: Tensor, weight2: Tensor,
                          bias2: Tensor, scale2: Tensor, shift2: Tensor, weight3: Tensor, bias3: Tensor,
                          scale3: Tensor, shift3: Tensor) -> Tensor:
    inputs = (x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3, bias3, scale3, shift3)
    checks.check_smoothing_inputs(*inputs, op=SMOOTHING_OP)
    _checks.check_kernel_device(SMOOTHING_OP, "cpp", "x", x)
    return cpu.spatial_smoothing(*inputs)


@spatial_smoothing_cpp.register_fake
def _(x, *parameters):
    checks.check_smoothing_inputs(x, *parameters, op=SMOOTHING_OP)
    return _channels_last(x, *x.shape[1:])


@torch.library.custom_op(SMOOTHING_OP + "_bwd", mutates_args=())
def spatial_smoothing_cpp_bwd(grad_out: Tensor, x: Tensor, weight1: Tensor, bias1: Tensor, scale1: Tensor,
                              shift1: Tensor, weight2: Tensor, bias2: Tensor, scale2: Tensor, shift2: Tensor,
                              weight3: Tensor, bias3: Tensor, scale3: Tensor, shift3: Tensor) -> list[Tensor]:
    inputs = (x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3, bias3, scale3, shift3)
    checks.check_smoothing_inputs(*inputs, op=SMOOTHING_OP + "_bwd")
    _check_grad(SMOOTHING_OP + "_bwd", grad_out, x.shape)
    return _cpu_common.backward_by_reference(spatial_smoothing_reference, grad_out, *inputs)


@spatial_smoothing_cpp_bwd.register_fake
def _(grad_out, *inputs):
    return [t.new_empty(t.shape) for t in inputs]


@torch.library.custom_op(CONV_OP, mutates_args=())
def conv_affine_act_cpp(x: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor, stride: int,
                        padding: int, groups: int, activation: str) -> Tensor:
    # Bias-free convolutions pass a zero bias: a custom op's optional tensor would complicate its autograd.
    checks.check_conv_inputs(x, weight, bias, scale, shift, stride, padding, groups, activation, CONV_OP)
    _checks.check_kernel_device(CONV_OP, "cpp", "x", x)
    return cpu.conv_affine_act(x, weight, bias, scale, shift, stride, padding, groups, activation)


@conv_affine_act_cpp.register_fake
def _(x, weight, bias, scale, shift, stride, padding, groups, activation):
    out_h, out_w = checks.check_conv_inputs(x, weight, bias, scale, shift, stride, padding, groups, activation,
                                            CONV_OP)
    return _channels_last(x, weight.shape[0], out_h, out_w)


@torch.library.custom_op(CONV_OP + "_bwd", mutates_args=())
def conv_affine_act_cpp_bwd(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, scale: Tensor, shift: Tensor,
                            stride: int, padding: int, groups: int, activation: str) -> list[Tensor]:
    inputs = (x, weight, bias, scale, shift, stride, padding, groups, activation)
    out_h, out_w = checks.check_conv_inputs(*inputs, CONV_OP + "_bwd")
    _check_grad(CONV_OP + "_bwd", grad_out, (x.shape[0], weight.shape[0], out_h, out_w))
    return _cpu_common.backward_by_reference(conv_affine_act_reference, grad_out, *inputs)


@conv_affine_act_cpp_bwd.register_fake
def _(grad_out, *inputs):
    return [t.new_empty(t.shape) for t in inputs[:-4]]


@torch.library.custom_op(DEPTHWISE_OP, mutates_args=())
def depthwise_conv3x3_cpp(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    checks.check_depthwise_inputs(x, weight, bias, DEPTHWISE_OP)
    _checks.check_kernel_device(DEPTHWISE_OP, "cpp", "x", x)
    return cpu.depthwise_conv(x, weight, bias)


@depthwise_conv3x3_cpp.register_fake
def _(x, weight, bias):
    checks.check_depthwise_inputs(x, weight, bias, DEPTHWISE_OP)
    return _channels_last(x, *x.shape[1:])


@torch.library.custom_op(DEPTHWISE_OP + "_bwd", mutates_args=())
def depthwise_conv3x3_cpp_bwd(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Tensor) -> list[Tensor]:
    checks.check_depthwise_inputs(x, weight, bias, DEPTHWISE_OP + "_bwd")
    _check_grad(DEPTHWISE_OP + "_bwd", grad_out, x.shape)
    return _cpu_common.backward_by_reference(depthwise_conv3x3_reference, grad_out, x, weight, bias)


@depthwise_conv3x3_cpp_bwd.register_fake
def _(grad_out, *inputs):
    return [t.new_empty(t.shape) for t in inputs]


_cpu_common.register_backward_op(depthwise_mlp_cpp, depthwise_mlp_cpp_bwd)
_cpu_common.register_backward_op(depthwise_conv3x3_cpp, depthwise_conv3x3_cpp_bwd)
_cpu_common.register_backward_op(conv_affine_act_cpp, conv_affine_act_cpp_bwd)
_cpu_common.register_backward_op(spatial_smoothing_cpp, spatial_smoothing_cpp_bwd)


def depthwise_mlp_macs(x, weight1, weight2, stride, **_) -> int:
    """The three convolutions and fvcore's charge for the two affines (eval-mode BatchNorms); GELU is free."""
    B, _, H, W = x
    hidden, out_channels = weight1[0], weight2[0]
    inputs, outputs = B * H * W, B * ((H - 1) // stride + 1) * ((W - 1) // stride + 1)
    return (inputs * hidden * (weight1[1] + AFFINE_MACS_PER_ELEMENT)
            + outputs * hidden * (9 + AFFINE_MACS_PER_ELEMENT) + outputs * hidden * out_channels)


def spatial_smoothing_macs(x, weight1, **_) -> int:
    """The three convolutions and the three affines' charge; the residual and GELUs are free."""
    B, C, H, W = x
    mid = weight1[0]
    return B * H * W * (C * mid + 9 * mid * mid + mid * C + AFFINE_MACS_PER_ELEMENT * (2 * mid + C))


def conv_affine_act_macs(x, weight, stride, padding, **_) -> int:
    """The convolution (without bias, as fvcore counts) and the affine's charge; GELU is free."""
    B, _, H, W = x
    out_channels, per_group, k, _ = weight
    pixels = B * ((H + 2 * padding - k) // stride + 1) * ((W + 2 * padding - k) // stride + 1)
    return pixels * out_channels * (per_group * k * k + AFFINE_MACS_PER_ELEMENT)


def depthwise_conv3x3_macs(x, **_) -> int:
    """Nine taps per output (without bias, as fvcore counts)."""
    return 9 * math.prod(x)


def _three_forwards(macs):
    # The backward recomputes the forward, then input and weight gradients: three forwards' worth.
    return lambda **arguments: 3 * macs(**arguments)


register_op_macs(torch.ops.hrvit.depthwise_mlp_cpp, depthwise_mlp_macs, torch.ops.hrvit.depthwise_mlp_cpp_bwd,
                 _three_forwards(depthwise_mlp_macs))
register_op_macs(torch.ops.hrvit.spatial_smoothing_cpp, spatial_smoothing_macs,
                 torch.ops.hrvit.spatial_smoothing_cpp_bwd, _three_forwards(spatial_smoothing_macs))
register_op_macs(torch.ops.hrvit.conv_affine_act_cpp, conv_affine_act_macs,
                 torch.ops.hrvit.conv_affine_act_cpp_bwd, _three_forwards(conv_affine_act_macs))
register_op_macs(torch.ops.hrvit.depthwise_conv3x3_cpp, depthwise_conv3x3_macs,
                 torch.ops.hrvit.depthwise_conv3x3_cpp_bwd, _three_forwards(depthwise_conv3x3_macs))
