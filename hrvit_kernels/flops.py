"""Multiply-add counting the fvcore way (1 multiply-add = 1), for comparison with published figures.

Counted, as fvcore counts them: matrix products (mm, addmm, bmm, baddbmm, attention through
scaled_dot_product_attention), convolutions (without bias), and fvcore's per-element charges for
normalisation (LayerNorm 5 per element with affine, BatchNorm in eval 2, in training 5) and resampling
(nearest 1, bilinear 4 per output element). Other element-wise ops (activations, softmax, additions)
are free. The package's custom ops report their own multiply-adds (``CUSTOM_OP_MACS``).
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

# Custom ops of this package register their multiply-add formula here: fn(args, out) -> int.
CUSTOM_OP_MACS: dict[object, Callable] = {}


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
