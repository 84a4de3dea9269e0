"""torch.library custom ops of the C++ resize-sum kernels (``hrvit::resize_sum_cpp`` and the adjoint
of one resize, ``hrvit::resize_backward_cpp``): fake functions, autograd and multiply-add count, so
that autograd, torch.compile(fullgraph=True) and opcheck work."""
from __future__ import annotations

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.resize_sum import checks, cpu

BILINEAR_MACS_PER_OUTPUT = 4  # fvcore's charge for bilinear resampling (see hrvit_kernels.flops)


# The ops check their own arguments too: torch.ops exposes them without the public function.
@torch.library.custom_op("hrvit::resize_sum_cpp", mutates_args=())
def resize_sum_cpp(maps: list[Tensor], height: int, width: int) -> Tensor:
    checks.check_inputs(maps, (height, width), "hrvit::resize_sum_cpp")
    _checks.check_kernel_device("hrvit::resize_sum_cpp", "cpp", "maps[0]", maps[0])
    return cpu.forward(maps, height, width)


@resize_sum_cpp.register_fake
def _(maps, height, width):
    checks.check_inputs(maps, (height, width), "hrvit::resize_sum_cpp")
    return maps[0].new_empty((*maps[0].shape[:2], height, width))


@torch.library.custom_op("hrvit::resize_backward_cpp", mutates_args=())
def resize_backward_cpp(grad: Tensor, map_height: int, map_width: int) -> Tensor:
    checks.check_op_backward_inputs("hrvit::resize_backward_cpp", grad, map_height, map_width)
    _checks.check_kernel_device("hrvit::resize_backward_cpp", "cpp", "grad", grad)
    return cpu.backward(grad, map_height, map_width)


@resize_backward_cpp.register_fake
def _(grad, map_height, map_width):
    checks.check_op_backward_inputs("hrvit::resize_backward_cpp", grad, map_height, map_width)
    return grad.new_empty((*grad.shape[:2], map_height, map_width))


def _setup_context(ctx, inputs, output):
    maps, ctx.height, ctx.width = inputs
    ctx.map_sizes = [tuple(m.shape) for m in maps]


def _backward(ctx, grad):
    grads = [grad if tuple(shape[2:]) == (ctx.height, ctx.width) else resize_backward_cpp(grad, *shape[2:])
             for shape in ctx.map_sizes]
    return grads, None, None


resize_sum_cpp.register_autograd(_backward, setup_context=_setup_context)


def _macs(maps, height, width) -> int:
    """fvcore's bilinear charge per output element, for each map that is resized."""
    batch, channels = maps[0][:2]
    resized = sum(1 for shape in maps if tuple(shape[2:]) != (height, width))
    return BILINEAR_MACS_PER_OUTPUT * batch * channels * height * width * resized


register_op_macs(torch.ops.hrvit.resize_sum_cpp, _macs)
