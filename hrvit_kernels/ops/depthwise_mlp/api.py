"""Public entry point of the depthwise MLP: validate, then dispatch."""
from __future__ import annotations

import torch

from hrvit_kernels.ops import _autocast, _checks, _cpu_common, _dispatch
from hrvit_kernels.ops.depthwise_mlp.checks import OP, check_inputs
from hrvit_kernels.ops.depthwise_mlp.reference import depthwise_mlp_reference
from hrvit_kernels.ops.depthwise_mlp.registration import depthwise_mlp_cpp

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
    (W-1)//stride + 1). Backends: "cpp" (the affines folded into the convolutions, the 1x1 convolutions as
    matrix products on tokens, one fused pass for the depthwise part; returned in channels-last memory) and
    "reference"; "auto" takes C++ on CPU and the reference (cuDNN's convolutions) elsewhere.
    """
    tensors = _autocast.lower_precision(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2,
                                        weight2, bias2)
    check_inputs(*tensors, stride)
    backend = _dispatch.choose_backend(OP, backend, tensors, AVAILABLE)
    if backend == "reference":
        return depthwise_mlp_reference(*tensors, stride)
    return depthwise_mlp_cpp(*tensors, stride)
