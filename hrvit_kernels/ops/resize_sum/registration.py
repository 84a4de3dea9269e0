"""torch.library custom op of the C++ resize-sum kernel (``hrvit::resize_sum_cpp``): fake function,
autograd and multiply-add count, so that autograd, torch.compile(fullgraph=True) and opcheck work.

The backward pass is the adjoint of each resize, PyTorch's own upsample_bilinear2d_backward: it
scatters into the small maps and is not where the time goes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hrvit_kernels.flops import CUSTOM_OP_MACS
from hrvit_kernels.ops.resize_sum import cpu

BILINEAR_MACS_PER_OUTPUT = 4  # fvcore's charge for bilinear resampling (see hrvit_kernels.flops)


@torch.library.custom_op("hrvit::resize_sum_cpp", mutates_args=())
def resize_sum_cpp(maps: list[Tensor], height: int, width: int) -> Tensor:
    return cpu.forward(maps, height, width)


@resize_sum_cpp.register_fake
def _(maps, height, width):
    return maps[0].new_empty((*maps[0].shape[:2], height, width))


def _setup_context(ctx, inputs, output):
    maps, ctx.height, ctx.width = inputs
    ctx.map_sizes = [tuple(m.shape) for m in maps]


def _resize_adjoint(grad: Tensor, shape) -> Tensor:
    """The gradient of a map of ``shape`` resized to grad's size."""
    if any(isinstance(n, torch.SymInt) for n in (*shape, *grad.shape)):
        # Traced with symbolic sizes (torch.compile(dynamic=True)), where the fake kernel of
        # upsample_bilinear2d_backward fails in this PyTorch: take the vjp of the resize instead.
        resize = lambda t: F.interpolate(t, size=grad.shape[-2:], mode="bilinear", align_corners=False)  # noqa: E731
        return torch.func.vjp(resize, grad.new_zeros(shape))[1](grad)[0]
    return torch.ops.aten.upsample_bilinear2d_backward(grad, list(grad.shape[-2:]), list(shape), False)


def _backward(ctx, grad):
    grads = [grad if tuple(shape[2:]) == (ctx.height, ctx.width) else _resize_adjoint(grad, shape)
             for shape in ctx.map_sizes]
    return grads, None, None


resize_sum_cpp.register_autograd(_backward, setup_context=_setup_context)


def _macs(args, out) -> int:
    resized = sum(1 for m in args[0] if tuple(m.shape[2:]) != tuple(out.shape[2:]))
    return BILINEAR_MACS_PER_OUTPUT * out.numel() * resized


CUSTOM_OP_MACS[torch.ops.hrvit.resize_sum_cpp.default] = _macs
