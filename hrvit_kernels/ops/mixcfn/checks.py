"""Input checks of the MixCFN convolution, shared by the public function and the registered custom ops (which
torch.ops also exposes): every message names the argument, and no call reaches a kernel with sizes
that would make it read or write past a tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks

OP = "mix_conv_gelu"


def check_inputs(x, hw, weight3, bias3, weight5, bias5, op: str = OP) -> tuple[int, int]:
    _checks.check_tensor(op, "x", x, 3)
    B, N, R = x.shape
    if R < 2:
        raise ValueError(f"{op}: 'x' must have at least 2 channels (two halves), got R = {R}")
    H, W = _checks.check_hw(op, hw, N)
    split = R // 2
    named = [("x", x)]
    for name, t, channels, k in (("weight3", weight3, split, 3), ("weight5", weight5, R - split, 5)):
        _checks.check_tensor(op, name, t, 4)
        _checks.check_shape(op, name, t, (channels, 1, k, k),
                            f"depthwise {k}x{k} over {'the first R//2' if k == 3 else 'the last R - R//2'}"
                            f" of R = {R} channels")
        named.append((name, t))
    for name, t, channels in (("bias3", bias3, split), ("bias5", bias5, R - split)):
        _checks.check_tensor(op, name, t, 1)
        _checks.check_shape(op, name, t, (channels,))
        named.append((name, t))
    _checks.check_same(op, named)
    return H, W


def check_op_backward_inputs(op: str, grad_out, x, H, W, weight3, bias3, weight5, bias5) -> None:
    check_inputs(x, (H, W), weight3, bias3, weight5, bias5, op)
    _checks.check_tensor(op, "grad_out", grad_out, 3)
    _checks.check_shape(op, "grad_out", grad_out, x.shape, "the shape of 'x'")
    _checks.check_same(op, [("x", x), ("grad_out", grad_out)])
