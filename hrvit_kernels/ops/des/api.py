"""HRViT's diversity-enhanced shortcut as an op: a Kronecker-factored linear C -> C with a GELU between
its factors, in the faster of two equal forms for the channel count."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hrvit_kernels.ops import _checks, _dispatch
from hrvit_kernels.ops.des.reference import kronecker_mlp_reference

OP = "kronecker_mlp"

# On at most this many channels the op runs as two dense C x C linears (see _dense). Measured on CPU:
# 2-6x faster at HRViT's stride-4 and stride-8 branches (C = 32..96, 4096-16384 tokens), where the
# factored form's two transposed copies dominate; slower at C >= 128, where the dense products' C / (k + p)
# times more multiply-adds dominate instead: there it runs factored without the axis swaps (_unswapped).
DENSE_MAX_CHANNELS = 96


def des_factors(dim: int) -> tuple[int, int]:
    """(k, p) with k * p = dim: p = 2 ** (e - e // 2), e = floor(log2(dim))."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"DES: argument 'dim' must be a positive int, got {dim!r}")
    e = int(math.floor(math.log2(dim)))
    p = 2 ** (e - e // 2)
    if dim % p:
        raise ValueError(f"DES: dim = {dim} is not divisible by its right factor p = {p}")
    return dim // p, p


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.kron of two matrices, written with broadcasting so that every exporter (ONNX's TorchScript
    one has no kron) can translate it."""
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])


def _dense(x, k, p, right_weight, right_bias, left_weight, left_bias) -> torch.Tensor:
    """The same map on the token layout, without the axis swaps. With channel c = i * p + j: the right
    factor acts on j within each block i, i.e. the C x C matrix kron(I_k, W_right), and the left factor
    mixes the blocks i for each j, i.e. kron(W_left, I_p)."""
    eye_k = torch.eye(k, dtype=right_weight.dtype, device=right_weight.device)
    eye_p = torch.eye(p, dtype=left_weight.dtype, device=left_weight.device)
    x = F.gelu(F.linear(x, _kron(eye_k, right_weight), right_bias.repeat(k)))
    return F.linear(x, _kron(left_weight, eye_p), left_bias.repeat_interleave(p))


def _unswapped(x, k, p, right_weight, right_bias, left_weight, left_bias) -> torch.Tensor:
    """The factored form with the left factor applied from the left, W_left @ (k, p) per token, so the result
    needs no axis swap back: at C = 128 and 256 (HRViT's stride-16 and stride-32 branches, 1024 and 256
    tokens) 0.54 -> 0.25 and 0.12 -> 0.10 ms in fp32, 0.58 -> 0.25 and 0.28 -> 0.16 ms under bf16 autocast."""
    hidden = F.gelu(F.linear(x.reshape(*x.shape[:-1], k, p), right_weight, right_bias))
    return (torch.matmul(left_weight, hidden) + left_bias[:, None]).reshape(x.shape)


def _check_inputs(x, k, p, right_weight, right_bias, left_weight, left_bias) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != k * p:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{OP}: argument 'x' must have k * p = {k * p} channels in its last dimension, got {got}")
    for name, t, shape in (("right_weight", right_weight, (p, p)), ("right_bias", right_bias, (p,)),
                           ("left_weight", left_weight, (k, k)), ("left_bias", left_bias, (k,))):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        _checks.check_shape(OP, name, t, shape)


@_checks.quiet_checks
def kronecker_mlp(x: torch.Tensor, k: int, p: int, right_weight: torch.Tensor, right_bias: torch.Tensor,
                  left_weight: torch.Tensor, left_bias: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x (..., k * p) viewed as (..., k, p): Linear(p, p) on the last axis, GELU, Linear(k, k) on the
    other. The reference backend runs the release's sequence; otherwise C <= DENSE_MAX_CHANNELS runs as two
    dense linears, larger C as the factored form without axis swaps (equal to rounding)."""
    _check_inputs(x, k, p, right_weight, right_bias, left_weight, left_bias)
    if _dispatch.reference_requested(OP, backend):
        return kronecker_mlp_reference(x, k, p, right_weight, right_bias, left_weight, left_bias)
    form = _dense if k * p <= DENSE_MAX_CHANNELS else _unswapped
    return form(x, k, p, right_weight, right_bias, left_weight, left_bias)
