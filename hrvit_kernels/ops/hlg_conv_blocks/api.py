"""Public entry points of HLG's conv blocks (eval mode): validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.hlg_conv_blocks.checks import (CONV_OP, DEPTHWISE_OP, OP, SMOOTHING_OP, check_conv_inputs,
                                                     check_depthwise_inputs, check_inputs, check_smoothing_inputs)
from hrvit_kernels.ops.hlg_conv_blocks.reference import (conv_affine_act_reference, depthwise_conv3x3_reference,
                                                        depthwise_mlp_reference, spatial_smoothing_reference)
from hrvit_kernels.ops.hlg_conv_blocks.registration import (conv_affine_act_cpp, depthwise_conv3x3_cpp,
                                                           depthwise_mlp_cpp, spatial_smoothing_cpp)

AVAILABLE = {"cpp": _cpu_common.available, "reference": _dispatch.always}


@_checks.quiet_checks
def depthwise_mlp(x: torch.Tensor, weight1: torch.Tensor, bias1: torch.Tensor, scale1: torch.Tensor,
                  shift1: torch.Tensor, weight_dw: torch.Tensor, bias_dw: torch.Tensor, scale2: torch.Tensor,
                  shift2: torch.Tensor, weight2: torch.Tensor, bias2: torch.Tensor, stride: int = 1,
                  backend: str = "auto") -> torch.Tensor:
    """``conv1x1(GELU(affine2(dwconv3x3(GELU(affine1(conv1x1(x, weight1, bias1))), stride)), weight2, bias2)``
    on an NCHW map x (B, C, H, W): HLG's MLP in eval mode, its BatchNorms given as per-channel affines
    (``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``).

    weight1 (hidden, C), weight_dw (hidden, 1, 3, 3) with zero padding 1 and ``stride`` 1 or 2, weight2
    (out_channels, hidden); biases, scales and shifts 1-D. Returns (B, out_channels, (H-1)//stride + 1,
    (W-1)//stride + 1). Backends: "cpp" (the 1x1 convolutions as matrix products on tokens, the first affine +
    GELU in place, one fused pass for the depthwise part; returned in channels-last memory) and
    "reference"; "auto" takes C++ on CPU and the reference (cuDNN's convolutions) elsewhere.
    """
    tensors = _autocast.lower_precision(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2,
                                        weight2, bias2)
    check_inputs(*tensors, stride)
    backend = _dispatch.choose_backend(OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return depthwise_mlp_reference(*tensors, stride)
    return _dispatch.run_kernel(depthwise_mlp_cpp, *tensors, stride)


@_checks.quiet_checks
def spatial_smoothing(x: torch.Tensor, weight1: torch.Tensor, bias1: torch.Tensor, scale1: torch.Tensor,
                      shift1: torch.Tensor, weight2: torch.Tensor, bias2: torch.Tensor, scale2: torch.Tensor,
                      shift2: torch.Tensor, weight3: torch.Tensor, bias3: torch.Tensor, scale3: torch.Tensor,
                      shift3: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``GELU(x + affine3(conv1x1(GELU(affine2(conv3x3(GELU(affine1(conv1x1(x, weight1, bias1))), weight2,
    bias2))), weight3, bias3)))`` on an NCHW map x (B, C, H, W): HLG's spatial smoothing in eval mode, the
    bottleneck's BatchNorms given as per-channel affines (see :func:`depthwise_mlp`).

    weight1 (mid, C), weight2 (mid, mid, 3, 3) with zero padding 1, weight3 (C, mid); biases, scales and
    shifts 1-D. Returns (B, C, H, W). Backends: "cpp" (1x1 convolutions as matrix products on tokens, the 3x3
    by oneDNN on channels-last memory, affines, GELUs and the residual fused into passes over the tokens;
    returned in channels-last memory) and "reference"; "auto" takes C++ on CPU and the reference elsewhere.
    """
    tensors = _autocast.lower_precision(x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3,
                                        bias3, scale3, shift3)
    check_smoothing_inputs(*tensors)
    backend = _dispatch.choose_backend(SMOOTHING_OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return spatial_smoothing_reference(*tensors)
    return _dispatch.run_kernel(spatial_smoothing_cpp, *tensors)


@_checks.quiet_checks
def conv_affine_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
                    shift: torch.Tensor, stride: int = 1, padding: int = 0, groups: int = 1,
                    activation: str = "gelu", backend: str = "auto") -> torch.Tensor:
    """``activation(conv2d(x, weight, bias, stride, padding, groups=groups) * scale + shift)`` per output
    channel on an NCHW map: a conv followed by an eval-mode BatchNorm (as scale and shift, see
    :func:`depthwise_mlp`) and ``activation``, "gelu" (exact) or "relu", as in HLG's stem and down-projections
    (GELU), SETR-HLG's fusion conv and SETR's heads (ReLU). ``bias`` may be None.

    Backends: "cpp" (3x3 stride-1 convolutions on large maps by Winograd's F(2x2, 3x3) with the affine and
    activation in its output transform, others by oneDNN on channels-last memory, then affine + activation in
    place; returned in channels-last memory) and "reference"; "auto" takes C++ on CPU and the reference
    elsewhere.
    """
    tensors = _autocast.lower_precision(x, weight, bias, scale, shift)
    check_conv_inputs(*tensors, stride, padding, groups, activation)
    if bias is None:  # the custom op takes a tensor
        tensors = (*tensors[:2], tensors[3].new_zeros(tensors[3].shape), *tensors[3:])
    backend = _dispatch.choose_backend(CONV_OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return conv_affine_act_reference(*tensors, stride, padding, groups, activation)
    return _dispatch.run_kernel(conv_affine_act_cpp, *tensors, stride, padding, groups, activation)


@_checks.quiet_checks
def depthwise_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1, groups=C)`` on an NCHW map x (B, C, H, W), weight (C, 1, 3, 3):
    HLG's ``aux_q``. Backends: "cpp" (one pass over the tokens; returned in channels-last memory) and
    "reference"; "auto" takes C++ on CPU and the reference elsewhere."""
    tensors = _autocast.lower_precision(x, weight, bias)
    check_depthwise_inputs(*tensors)
    backend = _dispatch.choose_backend(DEPTHWISE_OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return depthwise_conv3x3_reference(*tensors)
    return _dispatch.run_kernel(depthwise_conv3x3_cpp, *tensors)
