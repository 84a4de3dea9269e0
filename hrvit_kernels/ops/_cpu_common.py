"""Helpers shared by the ops' C++ bindings: availability, fp32 conversion at the boundary, token views."""
from __future__ import annotations

import torch

from hrvit_kernels import _ext

CPP_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# On bf16 inputs the stripe-attention forward multiplies in bf16 (fp32 accumulation and softmax) where the CPU
# has AVX-512-BF16, detected at run time (``bf16_dot_products()``); False keeps fp32 products everywhere.
BF16_DOT_PRODUCTS = True


def bf16_dot_products() -> bool:
    """Whether bf16 inputs get bf16 matrix products here: switched on, built, and the CPU runs them."""
    return BF16_DOT_PRODUCTS and _ext.HAS_EXT and _ext.ext().has_bf16_dot_products()


def available(tensors) -> str | None:
    """None when the C++ kernels can run on these tensors, else the reason."""
    if not _ext.HAS_EXT:
        return _ext.REBUILD_HINT
    if tensors[0].device.type != "cpu":
        return f"tensors are on {tensors[0].device}, this backend needs CPU tensors"
    if tensors[0].dtype not in CPP_DTYPES:
        return f"dtype {tensors[0].dtype} is not supported (accepted: float32, float16, bfloat16)"
    return None


def fp32_rows(t: torch.Tensor) -> torch.Tensor:
    """fp32 with unit channel stride: the kernels read tokens through batch and token strides, so
    slices such as the halves of a projection's output are passed without a copy."""
    t = t.float()
    return t if t.stride(-1) == 1 else t.contiguous()


def rows_as_read(t: torch.Tensor) -> torch.Tensor:
    """For a kernel that reads bf16 as well as fp32: a bf16 tensor as it is (unit channel stride), any
    other dtype as fp32 (fp32_rows)."""
    if t.dtype == torch.bfloat16:
        return t if t.stride(-1) == 1 else t.contiguous()
    return fp32_rows(t)


def token_arg(t: torch.Tensor) -> tuple[int, int, int, bool]:
    """(address, batch stride, token stride, is bf16) of a (B, N, C) fp32 or bf16 tensor with unit channel
    stride."""
    return t.data_ptr(), t.stride(0), t.stride(1), t.dtype == torch.bfloat16


@torch.autocast("cpu", enabled=False)
def backward_by_reference(reference, grad_out, *inputs) -> list[torch.Tensor]:
    """Every tensor input's gradient: the vector-Jacobian product of ``reference(*inputs)`` in fp32 (the fused
    forwards are for inference; gradients through them, for saliency maps or attacks, need only be right)."""
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    others = [t for t in inputs if not isinstance(t, torch.Tensor)]
    _, vjp = torch.func.vjp(lambda *ts: reference(*ts, *others), *(t.float() for t in tensors))
    return [g.to(t.dtype).contiguous() for g, t in zip(vjp(grad_out.float()), tensors)]


def register_backward_op(forward_op, backward_op) -> None:
    """Autograd for a custom op whose gradients come from ``backward_op(grad_out, *tensor inputs, *other
    inputs)`` (one gradient per tensor input); its non-tensor inputs (sizes, strides) get None."""
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*(t for t in inputs if isinstance(t, torch.Tensor)))
        ctx.others = [t for t in inputs if not isinstance(t, torch.Tensor)]

    def backward(ctx, grad_out):
        return (*backward_op(grad_out, *ctx.saved_tensors, *ctx.others), *([None] * len(ctx.others)))

    forward_op.register_autograd(backward, setup_context=setup_context)
