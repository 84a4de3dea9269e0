"""torch.library custom op of the C++ LayerNorm (``hrvit::add_layer_norm_cpp``, with a ``_bwd`` op): fake
functions, autograd and the operation count, so that autograd, torch.compile(fullgraph=True), opcheck and
FlopCounterMode work. The backward op is the reference's vector-Jacobian product: the fused forward is for
inference."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.layer_norm import checks, cpu
from hrvit_kernels.ops.layer_norm.reference import add_layer_norm_reference

OP = "hrvit::add_layer_norm_cpp"


def _output_dtypes(x, residual, out_dtype) -> list[torch.dtype]:
    return [out_dtype] if residual is None else [checks.sum_dtype(x, residual), out_dtype]


# The op checks its own arguments too: torch.ops exposes it without the public functions.
@torch.library.custom_op(OP, mutates_args=())
def add_layer_norm_cpp(x: Tensor, residual: Optional[Tensor], weight: Tensor, bias: Tensor, eps: float,
                       out_dtype: torch.dtype) -> list[Tensor]:
    checks.check_inputs(x, residual, weight, bias, eps, out_dtype, OP)
    _checks.check_kernel_device(OP, "cpp", "x", x)
    return cpu.forward(x, residual, weight, bias, eps, out_dtype)


@add_layer_norm_cpp.register_fake
def _(x, residual, weight, bias, eps, out_dtype):
    checks.check_inputs(x, residual, weight, bias, eps, out_dtype, OP)
    return [x.new_empty(x.shape, dtype=dtype) for dtype in _output_dtypes(x, residual, out_dtype)]


@torch.library.custom_op(OP + "_bwd", mutates_args=())
def add_layer_norm_cpp_bwd(grads: list[Tensor], x: Tensor, residual: Optional[Tensor], weight: Tensor,
                           bias: Tensor, eps: float, out_dtype: torch.dtype) -> list[Tensor]:
    """Gradients of x, residual (when given), weight and bias from the outputs' gradients (zeros for an output
    that received none)."""
    checks.check_inputs(x, residual, weight, bias, eps, out_dtype, OP + "_bwd")
    dtypes = _output_dtypes(x, residual, out_dtype)
    if len(grads) != len(dtypes):
        raise ValueError(f"{OP}_bwd: argument 'grads' must hold {len(dtypes)} tensors, one per output, "
                         f"got {len(grads)}")
    for i, g in enumerate(grads):
        _checks.check_tensor(OP + "_bwd", f"grads[{i}]", g, x.dim())
        _checks.check_shape(OP + "_bwd", f"grads[{i}]", g, tuple(x.shape), "x's shape")
    inputs = [x, weight, bias] if residual is None else [x, residual, weight, bias]

    def outputs(*tensors):
        x_, *rest = tensors
        residual_ = None if residual is None else rest.pop(0)
        return tuple(add_layer_norm_reference(x_, residual_, *rest, eps, torch.float32))

    with torch.autocast("cpu", enabled=False):
        _, vjp = torch.func.vjp(outputs, *(t.float() for t in inputs))
        gradients = vjp(tuple(g.float() for g in grads))
    # Copies: x's and the residual's gradients are one tensor, and a custom op's outputs must not alias.
    return [g.to(t.dtype, copy=True).contiguous() for g, t in zip(gradients, inputs)]


@add_layer_norm_cpp_bwd.register_fake
def _(grads, x, residual, weight, bias, eps, out_dtype):
    inputs = [x, weight, bias] if residual is None else [x, residual, weight, bias]
    return [t.new_empty(t.shape) for t in inputs]


def _setup_context(ctx, inputs, output):
    x, residual, weight, bias, eps, out_dtype = inputs
    ctx.save_for_backward(x, residual, weight, bias)
    ctx.eps, ctx.out_dtype = eps, out_dtype


def _backward(ctx, grads):
    x, residual, weight, bias = ctx.saved_tensors
    dtypes = _output_dtypes(x, residual, ctx.out_dtype)
    grads = [torch.zeros(x.shape, dtype=d, device=x.device) if g is None else g for g, d in zip(grads, dtypes)]
    gradients = add_layer_norm_cpp_bwd(grads, x, residual, weight, bias, ctx.eps, ctx.out_dtype)
    if residual is None:
        grad_x, grad_w, grad_b = gradients
        return grad_x, None, grad_w, grad_b, None, None
    return (*gradients, None, None)


add_layer_norm_cpp.register_autograd(_backward, setup_context=_setup_context)


def add_layer_norm_macs(x, weight, **_) -> int:
    """fvcore's LayerNorm count, 5 per element with the affine (the residual sum is free)."""
    return math.prod(x) * 5


def _backward_macs(**arguments) -> int:
    return add_layer_norm_macs(**arguments)  # the recomputed forward, as PyTorch's LayerNorm backward counts none


register_op_macs(torch.ops.hrvit.add_layer_norm_cpp, add_layer_norm_macs, torch.ops.hrvit.add_layer_norm_cpp_bwd,
                 _backward_macs)
