"""torch.library custom op of the C++ GELU MLP (``hrvit::gelu_mlp_cpp``, with a ``_bwd`` op): fake functions,
autograd and multiply-add count, so that autograd, torch.compile(fullgraph=True), opcheck and FlopCounterMode
work. The backward op is the reference's vector-Jacobian product: the fused forward is for inference."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hrvit_kernels.flops import register_op_macs
from hrvit_kernels.ops import _checks, _cpu_common
from hrvit_kernels.ops.gelu_mlp import checks, cpu
from hrvit_kernels.ops.gelu_mlp.reference import gelu_mlp_reference

OP = "hrvit::gelu_mlp_cpp"


# The op checks its own arguments too: torch.ops exposes it without the public function.
@torch.library.custom_op(OP, mutates_args=())
def gelu_mlp_cpp(x: Tensor, weight1: Tensor, bias1: Tensor, weight2: Tensor, bias2: Tensor) -> Tensor:
    checks.check_inputs(x, weight1, bias1, weight2, bias2, OP)
    _checks.check_kernel_device(OP, "cpp", "x", x)
    return cpu.forward(x, weight1, bias1, weight2, bias2)


@gelu_mlp_cpp.register_fake
def _(x, weight1, bias1, weight2, bias2):
    checks.check_inputs(x, weight1, bias1, weight2, bias2, OP)
    return x.new_empty((*x.shape[:-1], weight2.shape[0]))


@torch.library.custom_op(OP + "_bwd", mutates_args=())
def gelu_mlp_cpp_bwd(grad_out: Tensor, x: Tensor, weight1: Tensor, bias1: Tensor, weight2: Tensor,
                     bias2: Tensor) -> list[Tensor]:
    checks.check_inputs(x, weight1, bias1, weight2, bias2, OP + "_bwd")
    _checks.check_tensor(OP + "_bwd", "grad_out", grad_out, x.dim())
    _checks.check_shape(OP + "_bwd", "grad_out", grad_out, (*x.shape[:-1], weight2.shape[0]),
                        "the forward's output shape")
    return _cpu_common.backward_by_reference(gelu_mlp_reference, grad_out, x, weight1, bias1, weight2, bias2)


@gelu_mlp_cpp_bwd.register_fake
def _(grad_out, *inputs):
    return [t.new_empty(t.shape) for t in inputs]


_cpu_common.register_backward_op(gelu_mlp_cpp, gelu_mlp_cpp_bwd)


def gelu_mlp_macs(x, weight1, weight2, **_) -> int:
    """The two products (GELU is free)."""
    return math.prod(x[:-1]) * weight1[0] * (weight1[1] + weight2[0])


def _backward_macs(**arguments) -> int:
    # The recomputed forward, then input and weight gradients: three forwards' worth.
    return 3 * gelu_mlp_macs(**arguments)


register_op_macs(torch.ops.hrvit.gelu_mlp_cpp, gelu_mlp_macs, torch.ops.hrvit.gelu_mlp_cpp_bwd, _backward_macs)
