"""Input checks of the depthwise MLP, shared by the public function and the registered custom ops (which
torch.ops also exposes): every message names the argument, and no call reaches a kernel with sizes that
would make it read or write past a tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks

OP = "depthwise_mlp"


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
