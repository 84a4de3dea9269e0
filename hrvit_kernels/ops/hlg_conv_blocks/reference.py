"""Plain-PyTorch forms of HLG's conv blocks in eval mode, on NCHW maps, each BatchNorm given as a per-channel
affine (scale and shift): the oracle and the fallback.

- depthwise MLP: 1x1 conv, affine, exact GELU, 3x3 depthwise conv (zero padding 1, stride 1 or 2), affine,
  exact GELU, 1x1 conv.
- depthwise 3x3 conv (zero padding 1, bias): the query's local term (``aux_q``).
- conv + affine + activation (the stem's layers and a stage's down-projection with GELU, SETR-HLG's fusion conv
  with ReLU): any conv2d, affine, exact GELU or ReLU.
- spatial smoothing: GELU(x + R(x)) with the bottleneck R = 1x1 conv, affine, GELU, 3x3 conv (zero padding 1),
  affine, GELU, 1x1 conv, affine.
"""
from __future__ import annotations

import torch.nn.functional as F


def affine(t, scale, shift):
    """t * scale + shift per channel, as an eval-mode batch_norm with zero mean and unit variance: one pass,
    and counted as the release's BatchNorm is (hrvit_kernels.flops)."""
    mean, variance = t.new_zeros(t.shape[1]), t.new_ones(t.shape[1])
    return F.batch_norm(t, mean, variance, scale, shift, training=False, momentum=0.0, eps=0.0)


def depthwise_mlp_reference(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                            stride: int):
    hidden = F.conv2d(x, weight1[:, :, None, None], bias1)
    hidden = F.gelu(affine(hidden, scale1, shift1))
    hidden = F.conv2d(hidden, weight_dw, bias_dw, stride, 1, groups=weight_dw.shape[0])
    hidden = F.gelu(affine(hidden, scale2, shift2))
    return F.conv2d(hidden, weight2[:, :, None, None], bias2)


def spatial_smoothing_reference(x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3, bias3,
                                scale3, shift3):
    hidden = F.gelu(affine(F.conv2d(x, weight1[:, :, None, None], bias1), scale1, shift1))
    hidden = F.gelu(affine(F.conv2d(hidden, weight2, bias2, padding=1), scale2, shift2))
    return F.gelu(x + affine(F.conv2d(hidden, weight3[:, :, None, None], bias3), scale3, shift3))


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}  # conv_affine_act's (exact GELU)


def conv_affine_act_reference(x, weight, bias, scale, shift, stride: int, padding: int, groups: int,
                              activation: str = "gelu"):
    return ACTIVATIONS[activation](affine(F.conv2d(x, weight, bias, stride, padding, 1, groups), scale, shift))


def depthwise_conv3x3_reference(x, weight, bias):
    return F.conv2d(x, weight, bias, padding=1, groups=x.shape[1])
