"""An eval-mode BatchNorm as the per-channel affine map it is, for the layers that fold or fuse it, and the
conv + BatchNorm + activation layers that run as one op for inference."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.ops._kept import kept
from hrvit_kernels.ops import conv_affine_act
from hrvit_kernels.ops.hlg_conv_blocks.reference import ACTIVATIONS


def eval_affine(norm: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with norm(x) = x * scale + shift per channel, from its running statistics; kept between
    inference calls while they are unchanged. Callers must not modify them."""
    def compute():
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        return scale, norm.bias - norm.running_mean * scale
    return kept(norm, ("eval_affine", norm.eps), (norm.weight, norm.bias, norm.running_mean, norm.running_var),
                compute)


def fused_inference(*norms: nn.BatchNorm2d) -> bool:
    """Whether layers run as one of the inference ops: no gradient recorded and the given BatchNorms (if any) in
    eval mode, fixed affines. Training, and eval-mode training of frozen BatchNorms, keep PyTorch's layers,
    whose backward reuses their saved activations (the ops' backward recomputes the forward)."""
    return not torch.is_grad_enabled() and not any(norm.training for norm in norms)


def conv_bn_act(conv: nn.Conv2d, norm: nn.BatchNorm2d, x: torch.Tensor, activation: str) -> torch.Tensor:
    """activation(norm(conv(x))), "gelu" or "relu": one op for inference (:func:`hrvit_kernels.conv_affine_act`,
    a Winograd convolution for 3x3 stride-1 layers on large maps on CPU)."""
    if not fused_inference(norm):
        return ACTIVATIONS[activation](norm(conv(x)))
    return conv_affine_act(x, conv.weight, conv.bias, *eval_affine(norm), conv.stride[0], conv.padding[0],
                           conv.groups, activation)
