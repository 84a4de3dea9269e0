"""Tolerance rules, input factories and shared assertions for tests and benchmarks."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from hrvit_kernels.modules.release_ops import release_ops
from hrvit_kernels.ops import use_backend

# Fixed tolerances for fp32 kernels against the fp32 reference (atol, rtol).
FP32_TOL = (2e-5, 2e-5)
# The same for results summed over every token in another order (weight and bias gradients of a
# convolution over B x H x W pixels).
FP32_SUMMED_TOL = (1e-4, 1e-4)
# Whole models in float32: the package's rewrites and kernels (or an exported graph) against the release's
# sequence, whose sums run in other orders over many layers.
MODEL_TOL = (1e-4, 1e-4)
# One block's rewrite (folded BatchNorm, reordered sums) against the release's sequence, float32.
REWRITE_TOL = (1e-5, 1e-4)
# Two float64 forms of one map.
FP64_TOL = (1e-10, 1e-10)
# Floor added to the low-precision rule below, per dtype.
LOW_PRECISION_FLOOR = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-5}


@contextlib.contextmanager
def on_backend(model: nn.Module, backend: str) -> Iterator[nn.Module]:
    """The model as tests and benchmarks compare it: on "reference", the release's sequence of ops on the
    reference kernels (the release itself); on any other backend, the package's rewrites on its kernels."""
    with use_backend(backend), release_ops(model, backend == "reference"):
        yield model


def with_batchnorm_statistics(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` with random running statistics and affine parameters (a fresh one's are an
    identity, under which a wrongly applied affine would pass)."""
    for norm in module.modules():
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.normal_()
            norm.bias.data.normal_()
    return module


def randn(*shape, dtype=torch.float32, device="cpu", requires_grad=False, scale=1.0,
          generator=None) -> torch.Tensor:
    """Random normal test input (never zeros)."""
    t = torch.randn(*shape, dtype=torch.float32, device=device, generator=generator) * scale
    return t.to(dtype).requires_grad_(requires_grad)


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` as the second half of a buffer twice as wide in the last dim (as
    ``chunk`` of a projection gives), keeping ``requires_grad``. The first half is NaN, so a kernel
    that reads outside the view poisons its result."""
    c = t.shape[-1]
    wide = torch.full((*t.shape[:-1], 2 * c), float("nan"), dtype=t.dtype, device=t.device)
    wide[..., c:] = t.detach()
    return wide[..., c:].requires_grad_(t.requires_grad)


def forward_backward(fn: Callable, inputs: Sequence[torch.Tensor], grad_outputs=None, seed: int = 0):
    """Runs fn(*inputs); backpropagates explicit random upstream gradients (not .sum(), which would hide
    stride bugs). Returns (outputs tuple, grads of the inputs that require grad, grad_outputs)."""
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    if grad_outputs is None:
        g = torch.Generator().manual_seed(seed)
        grad_outputs = tuple(torch.randn(o.shape, generator=g).to(o.dtype).to(o.device) for o in outs)
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(outs, diff, grad_outputs, allow_unused=False) if diff else ()
    return outs, grads, grad_outputs


def assert_close_fp32(actual, expected, what: str = "", summed: bool = False) -> None:
    """fp32 kernel against the fp32 reference at the fixed tolerance (``summed``: FP32_SUMMED_TOL)."""
    atol, rtol = FP32_SUMMED_TOL if summed else FP32_TOL
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def assert_close_within(actual, expected, tol: tuple[float, float], what: str = "") -> None:
    """actual equals expected within one of the named tolerances above (atol, rtol)."""
    atol, rtol = tol
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def assert_as_accurate_as_reference(actual, reference_same_dtype, reference_fp64, what: str, factor: float,
                                    floor: float) -> None:
    """max |kernel - fp64| <= factor * max |reference in the same dtype - fp64| + floor.

    The accuracy rule for every kernel where a fixed tolerance would not mean anything: sharp logits
    (queries scaled by 1000 give errors near 1e-2 in any float32 attention, the reference's included),
    long stripes, low precision. A kernel is as good as PyTorch's own ops in the same dtype when it stays
    within factor 2 (factor 4 for float32 sums whose order differs over thousands of keys)."""
    err = (actual.double() - reference_fp64.double()).abs().max().item()
    ref_err = (reference_same_dtype.double() - reference_fp64.double()).abs().max().item()
    assert err <= factor * ref_err + floor, (
        f"{what}: error {err:.3g} against fp64 > {factor:g} x the same-dtype reference's {ref_err:.3g} + {floor:.3g}")


def assert_low_precision_close(actual, reference_same_dtype, reference_fp64, what: str = "") -> None:
    """flash-attention's rule: |kernel - fp64| <= 2 * |reference in the same dtype - fp64| + floor."""
    assert_as_accurate_as_reference(actual, reference_same_dtype, reference_fp64, what, 2.0,
                                    LOW_PRECISION_FLOOR[actual.dtype])


def assert_compiled_matches_eager(fn: Callable, inputs: Sequence[torch.Tensor]) -> None:
    """torch.compile(fn, fullgraph=True) gives the eager outputs and gradients (same upstream gradients)."""
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    outs, grads, g = forward_backward(compiled, inputs)
    expected, expected_grads, _ = forward_backward(fn, inputs, g)
    for actual, wanted in zip(outs + grads, expected + expected_grads):
        torch.testing.assert_close(actual, wanted)
