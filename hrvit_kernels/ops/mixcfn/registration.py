"""torch.library custom ops of the MixCFN kernels (``hrvit::mix_conv_gelu_cpp`` and
``hrvit::mix_conv_gelu_triton``, each with a ``_bwd`` op): fake functions, autograd and FLOP formula,
so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work. Both backends'
kernel modules expose the same ``forward`` and ``backward``."""
from __future__ import annotations

import importlib

import torch
import torch.utils.flop_counter
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.mixcfn import checks

# Backend -> module with forward/backward; triton's is imported on first use only.
KERNEL_MODULES = {"cpp": "hrvit_kernels.ops.mixcfn.cpu", "triton": "hrvit_kernels.ops.mixcfn.triton_kernels"}


def mix_conv_macs(x_shape, split: int) -> int:
    """Multiply-adds of the two depthwise convolutions (GELU is element-wise and not counted)."""
    B, N, R = x_shape
    return B * N * (9 * split + 25 * (R - split))


def _define(backend: str):
    def kernels():
        return importlib.import_module(KERNEL_MODULES[backend])

    # The ops check their own arguments too: torch.ops exposes them without the public function.
    op = f"hrvit::mix_conv_gelu_{backend}"

    @torch.library.custom_op(op, mutates_args=())
    def fwd(x: Tensor, H: int, W: int, weight3: Tensor, bias3: Tensor, weight5: Tensor, bias5: Tensor) -> Tensor:
        checks.check_inputs(x, (H, W), weight3, bias3, weight5, bias5, op)
        _checks.check_kernel_device(op, backend, "x", x)
        return kernels().forward(x, H, W, weight3, bias3, weight5, bias5)

    @fwd.register_fake
    def _(x, H, W, weight3, bias3, weight5, bias5):
        checks.check_inputs(x, (H, W), weight3, bias3, weight5, bias5, op)
        return x.new_empty(x.shape)

    @torch.library.custom_op(op + "_bwd", mutates_args=())
    def bwd(grad_out: Tensor, x: Tensor, H: int, W: int, weight3: Tensor, bias3: Tensor, weight5: Tensor,
            bias5: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        checks.check_op_backward_inputs(op + "_bwd", grad_out, x, H, W, weight3, bias3, weight5, bias5)
        _checks.check_kernel_device(op + "_bwd", backend, "x", x)
        return kernels().backward(grad_out, x, H, W, weight3, bias3, weight5, bias5)

    @bwd.register_fake
    def _(grad_out, x, H, W, weight3, bias3, weight5, bias5):
        checks.check_op_backward_inputs(op + "_bwd", grad_out, x, H, W, weight3, bias3, weight5, bias5)
        return (x.new_empty(x.shape), torch.empty_like(weight3), torch.empty_like(bias3),
                torch.empty_like(weight5), torch.empty_like(bias5))

    def setup_context(ctx, inputs, output):
        x, H, W, weight3, bias3, weight5, bias5 = inputs
        ctx.save_for_backward(x, weight3, bias3, weight5, bias5)
        ctx.hw = (H, W)

    def backward(ctx, grad_out):
        x, weight3, bias3, weight5, bias5 = ctx.saved_tensors
        grad_x, grad_w3, grad_b3, grad_w5, grad_b5 = bwd(grad_out, x, *ctx.hw, weight3, bias3, weight5, bias5)
        return grad_x, None, None, grad_w3, grad_b3, grad_w5, grad_b5

    fwd.register_autograd(backward, setup_context=setup_context)

    def macs(x, weight3, **_) -> int:
        return mix_conv_macs(x, weight3[0])

    def backward_macs(x, weight3, **_) -> int:
        # Recomputed forward conv, input gradient and weight gradient: three convolutions' worth.
        return 3 * mix_conv_macs(x, weight3[0])

    register_op_macs(getattr(torch.ops.hrvit, f"mix_conv_gelu_{backend}"), macs,
                     getattr(torch.ops.hrvit, f"mix_conv_gelu_{backend}_bwd"), backward_macs)
    return fwd


mix_conv_gelu_cpp = _define("cpp")
mix_conv_gelu_triton = _define("triton")
