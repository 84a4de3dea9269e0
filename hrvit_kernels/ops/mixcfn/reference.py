"""Plain-PyTorch MixCFN mixed-scale depthwise convolution + GELU: the oracle and the fallback.

This is the release's sequence: tokens to NCHW, a 3x3 depthwise conv on the first R/2 channels and a
5x5 one on the rest (zero padding, bias), concatenation, exact (erf) GELU, back to tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mix_conv_gelu_reference(x, hw, weight3, bias3, weight5, bias5):
    B, N, R = x.shape
    H, W = hw
    split = weight3.shape[0]
    image = x.transpose(1, 2).reshape(B, R, H, W)
    conv3 = F.conv2d(image[:, :split], weight3, bias3, padding=1, groups=split)
    conv5 = F.conv2d(image[:, split:], weight5, bias5, padding=2, groups=R - split)
    return F.gelu(torch.cat([conv3, conv5], dim=1)).flatten(2).transpose(1, 2)
