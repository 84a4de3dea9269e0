"""Plain-PyTorch depthwise MLP: the oracle and the fallback. HLG's MLP in eval mode: 1x1 conv, per-channel affine
(an eval-mode BatchNorm as scale and shift), exact GELU, 3x3 depthwise conv (zero padding 1, stride 1 or 2),
affine, exact GELU, 1x1 conv, on NCHW maps."""
from __future__ import annotations

import torch.nn.functional as F


def _affine(t, scale, shift):
    """t * scale + shift per channel, as an eval-mode batch_norm with zero mean and unit variance: one pass,
    and counted as the release's BatchNorm is (hrvit_kernels.flops)."""
    mean, variance = t.new_zeros(t.shape[1]), t.new_ones(t.shape[1])
    return F.batch_norm(t, mean, variance, scale, shift, training=False, momentum=0.0, eps=0.0)


def depthwise_mlp_reference(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2,
                            stride: int):
    hidden = F.conv2d(x, weight1[:, :, None, None], bias1)
    hidden = F.gelu(_affine(hidden, scale1, shift1))
    hidden = F.conv2d(hidden, weight_dw, bias_dw, stride, 1, groups=weight_dw.shape[0])
    hidden = F.gelu(_affine(hidden, scale2, shift2))
    return F.conv2d(hidden, weight2[:, :, None, None], bias2)
