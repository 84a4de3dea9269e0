"""Input checks of HLG's conv blocks, shared by the public function and the registered custom ops (which
torch.ops also exposes): every message names the argument, and no call reaches a kernel with sizes that
would make it read or write past a tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks
from hrvit_kernels.ops.hlg_conv_blocks.reference import ACTIVATIONS

OP = "depthwise_mlp"
SMOOTHING_OP = "spatial_smoothing"
CONV_OP = "conv_affine_act"
DEPTHWISE_OP = "depthwise_conv3x3"


def check_inputs(x, weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2, stride,
                 op: str = OP) -> tuple[int, int]:
    """Validates the arguments; returns the output's (height, width)."""
    _checks.check_tensor(op, "x", x, 4)
    B, C, H, W = x.shape
    _checks.check_tensor(op, "weight1", weight1, 2)
    hidden = weight1.shape[0]
    _checks.check_shape(op, "weight1", weight1, (hidden, C), f"(hidden, {C}): x has {C} channels")
    _checks.check_tensor(op, "weight_dw", weight_dw, 4)
    _checks.check_shape(op, "weight_dw", weight_dw, (hidden, 1, 3, 3), f"depthwise 3x3 over the {hidden} hidden "
                        "channels of 'weight1'")
    _checks.check_tensor(op, "weight2", weight2, 2)
    _checks.check_shape(op, "weight2", weight2, (weight2.shape[0], hidden), f"(out_channels, {hidden})")
    named = [("x", x), ("weight1", weight1), ("weight_dw", weight_dw), ("weight2", weight2)]
    for name, t, channels in (("bias1", bias1, hidden), ("scale1", scale1, hidden), ("shift1", shift1, hidden),
                              ("bias_dw", bias_dw, hidden), ("scale2", scale2, hidden), ("shift2", shift2, hidden),
                              ("bias2", bias2, weight2.shape[0])):
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (channels,))
        named.append((name, t))
    _checks.check_same(op, named)
    if stride not in (1, 2) or isinstance(stride, bool):
        raise ValueError(f"{op}: argument 'stride' must be 1 or 2, got {stride!r}")
    return (H - 1) // stride + 1, (W - 1) // stride + 1


def check_smoothing_inputs(x, weight1, bias1, scale1, shift1, weight2, bias2, scale2, shift2, weight3, bias3, scale3,
                           shift3, op: str = SMOOTHING_OP) -> None:
    _checks.check_tensor(op, "x", x, 4)
    C = x.shape[1]
    _checks.check_tensor(op, "weight1", weight1, 2)
    mid = weight1.shape[0]
    _checks.check_shape(op, "weight1", weight1, (mid, C), f"(mid, {C}): x has {C} channels")
    _checks.check_tensor(op, "weight2", weight2, 4)
    _checks.check_shape(op, "weight2", weight2, (mid, mid, 3, 3), f"a 3x3 conv over the {mid} channels of 'weight1'")
    _checks.check_tensor(op, "weight3", weight3, 2)
    _checks.check_shape(op, "weight3", weight3, (C, mid), f"({C}, {mid}): back to x's channels")
    named = [("x", x), ("weight1", weight1), ("weight2", weight2), ("weight3", weight3)]
    for name, t, channels in (("bias1", bias1, mid), ("scale1", scale1, mid), ("shift1", shift1, mid),
                              ("bias2", bias2, mid), ("scale2", scale2, mid), ("shift2", shift2, mid),
                              ("bias3", bias3, C), ("scale3", scale3, C), ("shift3", shift3, C)):
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (channels,))
        named.append((name, t))
    _checks.check_same(op, named)


def check_conv_inputs(x, weight, bias, scale, shift, stride, padding, groups, activation,
                      op: str = CONV_OP) -> tuple[int, int]:
    """Validates the arguments; returns the output's (height, width)."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"{op}: argument 'activation' must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    _checks.check_tensor(op, "x", x, 4)
    C = x.shape[1]
    for name, value, lowest in (("stride", stride, 1), ("padding", padding, 0), ("groups", groups, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise ValueError(f"{op}: argument '{name}' must be an int >= {lowest}, got {value!r}")
    _checks.check_tensor(op, "weight", weight, 4)
    out_channels = weight.shape[0]
    if C % groups or out_channels % groups or weight.shape[1] != C // groups or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"{op}: argument 'weight' must have shape (out_channels, {C} / groups, k, k) with groups "
                         f"= {groups} dividing both channel counts (x has {C} channels), got {tuple(weight.shape)}")
    named = [("x", x), ("weight", weight)]
    for name, t in (("bias", bias), ("scale", scale), ("shift", shift)):
        if name == "bias" and t is None:
            continue
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (out_channels,))
        named.append((name, t))
    _checks.check_same(op, named)
    k = weight.shape[2]
    out_h, out_w = ((size + 2 * padding - k) // stride + 1 for size in x.shape[2:])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: argument 'x' of size {tuple(x.shape[2:])} is smaller than the {k}x{k} kernel "
                         f"with padding {padding}")
    return out_h, out_w


def check_depthwise_inputs(x, weight, bias, op: str = DEPTHWISE_OP) -> None:
    _checks.check_tensor(op, "x", x, 4)
    C = x.shape[1]
    _checks.check_tensor(op, "weight", weight, 4)
    _checks.check_shape(op, "weight", weight, (C, 1, 3, 3), f"depthwise 3x3 over x's {C} channels")
    _checks.check_tensor(op, "bias", bias, 1)
    _checks.check_shape(op, "bias", bias, (C,))
    _checks.check_same(op, [("x", x), ("weight", weight), ("bias", bias)])
