"""torch.library custom ops of HLG's attention kernels (``hrvit::hlg_local_attention_{cpp,triton}`` and
``hrvit::hlg_global_attention_{cpp,triton}``, each with a ``_bwd`` op): fake functions, autograd and FLOP
formulas, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode work. Both backends'
kernel modules expose the same local_/global_ forward and backward."""
from __future__ import annotations

import importlib
import math

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.hlg_attention import checks
from hrvit_kernels.ops.hlg_attention.checks import WINDOW

KERNEL_MODULES = {"cpp": "hrvit_kernels.ops.hlg_attention.cpu",
                  "triton": "hrvit_kernels.ops.hlg_attention.triton_kernels"}


def local_attention_macs(batch: int, H: int, W: int, channels: int) -> int:
    """Multiply-adds of q q^T and p v in every 7 x 7 window of the padded map (as the release computes)."""
    windows = math.ceil(H / WINDOW) * math.ceil(W / WINDOW)
    return 2 * batch * windows * (WINDOW * WINDOW) ** 2 * channels


def global_attention_macs(batch: int, queries: int, keys: int, channels: int) -> int:
    """Multiply-adds of q k^T and p v."""
    return 2 * batch * queries * keys * channels


def _lse_shape(q, heads):
    return (q.shape[0], heads, q.shape[1])


def _define_local(backend: str):
    def kernels():
        return importlib.import_module(KERNEL_MODULES[backend])

    op = f"hrvit::hlg_local_attention_{backend}"

    @torch.library.custom_op(op, mutates_args=())
    def fwd(q: Tensor, v: Tensor, H: int, W: int, dilated: bool, bias: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        checks.check_local_inputs(q, v, (H, W), dilated, bias, scale, op)
        _checks.check_kernel_device(op, backend, "q", q)
        return kernels().local_forward(q, v, H, W, dilated, bias, scale)

    @fwd.register_fake
    def _(q, v, H, W, dilated, bias, scale):
        checks.check_local_inputs(q, v, (H, W), dilated, bias, scale, op)
        return q.new_empty(q.shape), q.new_empty(_lse_shape(q, bias.shape[0]), dtype=torch.float32)

    @torch.library.custom_op(op + "_bwd", mutates_args=())
    def bwd(grad_out: Tensor, q: Tensor, v: Tensor, out: Tensor, lse: Tensor, H: int, W: int, dilated: bool,
            bias: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        checks.check_local_backward_inputs(op + "_bwd", grad_out, q, v, out, lse, H, W, dilated, bias, scale)
        _checks.check_kernel_device(op + "_bwd", backend, "q", q)
        return kernels().local_backward(grad_out, q, v, out, lse, H, W, dilated, bias, scale)

    @bwd.register_fake
    def _(grad_out, q, v, out, lse, H, W, dilated, bias, scale):
        checks.check_local_backward_inputs(op + "_bwd", grad_out, q, v, out, lse, H, W, dilated, bias, scale)
        return q.new_empty(q.shape), v.new_empty(v.shape), bias.new_empty(bias.shape)

    def setup_context(ctx, inputs, output):
        q, v, ctx.H, ctx.W, ctx.dilated, bias, ctx.scale = inputs
        out, lse = output
        ctx.save_for_backward(q, v, bias, out, lse)

    def backward(ctx, grad_out, grad_lse):
        q, v, bias, out, lse = ctx.saved_tensors
        grad_q, grad_v, grad_bias = bwd(grad_out, q, v, out, lse, ctx.H, ctx.W, ctx.dilated, bias, ctx.scale)
        return grad_q, grad_v, None, None, None, grad_bias, None

    fwd.register_autograd(backward, setup_context=setup_context)

    def macs(q, H, W, **_) -> int:
        return local_attention_macs(q[0], H, W, q[2])

    def backward_macs(q, H, W, **_) -> int:
        return 5 * (local_attention_macs(q[0], H, W, q[2]) // 2)

    register_op_macs(getattr(torch.ops.hrvit, f"hlg_local_attention_{backend}"), macs,
                     getattr(torch.ops.hrvit, f"hlg_local_attention_{backend}_bwd"), backward_macs)
    return fwd


def _define_global(backend: str):
    def kernels():
        return importlib.import_module(KERNEL_MODULES[backend])

    op = f"hrvit::hlg_global_attention_{backend}"

    @torch.library.custom_op(op, mutates_args=())
    def fwd(q: Tensor, k: Tensor, v: Tensor, H: int, W: int, grid_h: int, grid_w: int, table: Tensor,
            scale: float) -> tuple[Tensor, Tensor]:
        checks.check_global_inputs(q, k, v, (H, W), table, scale, (grid_h, grid_w), op)
        _checks.check_kernel_device(op, backend, "q", q)
        return kernels().global_forward(q, k, v, H, W, grid_h, grid_w, table, scale)

    @fwd.register_fake
    def _(q, k, v, H, W, grid_h, grid_w, table, scale):
        checks.check_global_inputs(q, k, v, (H, W), table, scale, (grid_h, grid_w), op)
        return q.new_empty(q.shape), q.new_empty(_lse_shape(q, table.shape[0]), dtype=torch.float32)

    @torch.library.custom_op(op + "_bwd", mutates_args=())
    def bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, H: int, W: int,
            grid_h: int, grid_w: int, table: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        checks.check_global_backward_inputs(op + "_bwd", grad_out, q, k, v, out, lse, H, W, grid_h, grid_w, table,
                                            scale)
        _checks.check_kernel_device(op + "_bwd", backend, "q", q)
        return kernels().global_backward(grad_out, q, k, v, out, lse, H, W, grid_h, grid_w, table, scale)

    @bwd.register_fake
    def _(grad_out, q, k, v, out, lse, H, W, grid_h, grid_w, table, scale):
        checks.check_global_backward_inputs(op + "_bwd", grad_out, q, k, v, out, lse, H, W, grid_h, grid_w, table,
                                            scale)
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), table.new_empty(table.shape)

    def setup_context(ctx, inputs, output):
        q, k, v, *ctx.sizes, table, ctx.scale = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, table, out, lse)

    def backward(ctx, grad_out, grad_lse):
        q, k, v, table, out, lse = ctx.saved_tensors
        grad_q, grad_k, grad_v, grad_table = bwd(grad_out, q, k, v, out, lse, *ctx.sizes, table, ctx.scale)
        return grad_q, grad_k, grad_v, None, None, None, None, grad_table, None

    fwd.register_autograd(backward, setup_context=setup_context)

    def macs(q, k, **_) -> int:
        return global_attention_macs(q[0], q[1], k[1], q[2])

    def backward_macs(q, k, **_) -> int:
        return 5 * (global_attention_macs(q[0], q[1], k[1], q[2]) // 2)

    register_op_macs(getattr(torch.ops.hrvit, f"hlg_global_attention_{backend}"), macs,
                     getattr(torch.ops.hrvit, f"hlg_global_attention_{backend}_bwd"), backward_macs)
    return fwd


hlg_local_attention_cpp = _define_local("cpp")
hlg_local_attention_triton = _define_local("triton")
hlg_global_attention_cpp = _define_global("cpp")
hlg_global_attention_triton = _define_global("triton")
