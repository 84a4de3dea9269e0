"""Multiply-add counting the fvcore way (1 multiply-add = 1), for comparison with published figures.

Counted, as fvcore counts them: matrix products (mm, addmm, bmm, baddbmm, attention through
scaled_dot_product_attention), convolutions (without bias), and fvcore's per-element charges for
normalisation (LayerNorm 5 per element with affine, BatchNorm in eval 2, in training 5) and resampling
(nearest 1, bilinear 4 per output element). Other element-wise ops (activations, softmax, additions)
are free. The package's custom ops declare their multiply-adds once, with :func:`register_op_macs`, which
feeds both this counter and PyTorch's ``FlopCounterMode`` (2 FLOPs per multiply-add).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _numel(shape) -> int:
    return math.prod(shape)


def _mm(args, out):
    a, b = args[-2], args[-1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(args, out):
    a, b = args[-2], args[-1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _conv(args, out):
    weight = args[1]
    return out.shape[0] * _numel(out.shape[2:]) * _numel(weight.shape)


def _sdpa(args, out):
    q, k = args[0], args[1]  # (..., L, E), (..., S, E); v has E_v
    v = args[2]
    batch = _numel(q.shape[:-2])
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _layer_norm(args, out):
    affine = len(args) > 2 and args[2] is not None
    return _numel(args[0].shape) * (5 if affine else 4)


def _batch_norm(training: bool):
    def rule(args, out):
        affine = args[1] is not None
        if training:
            return _numel(args[0].shape) * (5 if affine else 4)
        return _numel(args[0].shape) * (2 if affine else 1)
    return rule


def _native_batch_norm(args, out):  # (input, weight, bias, running_mean, running_var, training, ...)
    return _batch_norm(bool(args[5]))(args, out)


def _per_output(factor: int):
    return lambda args, out: factor * _numel(out.shape)


_OUT0 = lambda out: out[0] if isinstance(out, (tuple, list)) else out  # noqa: E731

ATEN_MACS: dict = {
    aten.mm.default: _mm, aten.addmm.default: _mm, aten.bmm.default: _bmm, aten.baddbmm.default: _bmm,
    aten.convolution.default: _conv,
    aten._scaled_dot_product_flash_attention_for_cpu.default: _sdpa,
    aten._scaled_dot_product_efficient_attention.default: _sdpa,
    aten._scaled_dot_product_flash_attention.default: _sdpa,
    aten._scaled_dot_product_cudnn_attention.default: _sdpa,
    aten.native_layer_norm.default: _layer_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm(training=False),
    aten._native_batch_norm_legit.default: _native_batch_norm,
    aten.native_batch_norm.default: _native_batch_norm,
    aten.upsample_nearest2d.default: _per_output(1),
    aten.upsample_nearest2d.vec: _per_output(1),
    aten.upsample_bilinear2d.default: _per_output(4),
    aten.upsample_bilinear2d.vec: _per_output(4),
}

# Filled by register_op_macs: the custom op's overload -> fn(args, out) -> multiply-adds.
CUSTOM_OP_MACS: dict[object, Callable] = {}


def _shapes(value):
    """Tensors (also inside lists) replaced by their shapes, as FlopCounterMode hands them to formulas."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_shapes(v) for v in value)
    return value


def _named_formula(op, macs: Callable[..., int]) -> Callable[..., int]:
    """macs(**arguments by schema name) as a function of the op's positional and keyword arguments."""
    names = [argument.name for argument in op.default._schema.arguments]

    def formula(*args, **kwargs) -> int:
        return int(macs(**dict(zip(names, args)), **kwargs))
    return formula


def register_op_macs(op, macs: Callable[..., int], backward_op=None,
                     backward_macs: Callable[..., int] | None = None) -> None:
    """Declare a custom op's multiply-adds once: ``macs`` takes the op's arguments by their schema names,
    tensors given as shapes, and returns multiply-adds. It feeds :class:`MacCounter` (forward only, as
    fvcore counts) and ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add), as does
    ``backward_macs`` for ``backward_op``."""
    forward = _named_formula(op, macs)
    CUSTOM_OP_MACS[op.default] = lambda args, out: forward(*_shapes(tuple(args)))
    torch.utils.flop_counter.register_flop_formula(op)(
        lambda *args, out_shape=None, **kwargs: 2 * forward(*args, **kwargs))
    if backward_op is not None:
        backward = _named_formula(backward_op, backward_macs)
        torch.utils.flop_counter.register_flop_formula(backward_op)(
            lambda *args, out_shape=None, **kwargs: 2 * backward(*args, **kwargs))


def op_flops(fn: Callable[[], object], namespace: str = "hrvit") -> int:
    """FLOPs that the custom ops of ``namespace`` declare for one call of fn (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    counts = counter.get_flop_counts().get("Global", {})
    return sum(n for op, n in counts.items() if str(op).startswith(f"{namespace}."))


class MacCounter(TorchDispatchMode):
    """Counts multiply-adds of everything run inside it; ``by_op`` breaks them down by op name."""

    def __init__(self):
        super().__init__()
        self.by_op: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = ATEN_MACS.get(func) or CUSTOM_OP_MACS.get(func)
        if rule is not None:
            self.by_op[func.overloadpacket.__name__] += int(rule(args, _OUT0(out)))
        return out


@torch.no_grad()
def count_macs(model: torch.nn.Module, inputs: torch.Tensor, forward: Callable | None = None) -> MacCounter:
    """Multiply-adds of one pass of ``forward`` (default: ``model``) in eval mode, as fvcore is used."""
    was_training = model.training
    model.eval()
    try:
        with MacCounter() as counter:
            (forward or model)(inputs)
    finally:
        model.train(was_training)
    return counter


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
