"""Input checks of attention-to-mask, shared by the public function and the registered custom ops (which
torch.ops also exposes): every message names the argument, and no call reaches a kernel with sizes
that would make it read or write past a tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks

OP = "attention_to_mask"


def check_inputs(q, k, v, num_heads, scale, op: str = OP) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_tensor(op, name, t, 3)
    _checks.check_same(op, [("q", q), ("k", k), ("v", v)])
    B, Q, C = q.shape
    if k.shape[0] != B or k.shape[2] != C:
        raise ValueError(f"{op}: argument 'k' must have shape (B={B}, L, C={C}), got {tuple(k.shape)}")
    _checks.check_shape(op, "v", v, k.shape, "the shape of 'k', (B, L, C)")
    if Q < 1 or k.shape[1] < 1:
        raise ValueError(f"{op}: need at least one query and one key, got Q = {Q}, L = {k.shape[1]}")
    if C < 1:
        raise ValueError(f"{op}: 'q', 'k' and 'v' must have at least one channel, got C = {C}")
    _checks.check_positive_int(op, "num_heads", num_heads)
    if C % num_heads:
        raise ValueError(f"{op}: the channel count C = {C} must be divisible by num_heads = {num_heads}")
    _checks.check_scale(op, scale)


def check_op_backward_inputs(op: str, grad_out, grad_mask, q, k, v, out, lse, num_heads, scale) -> None:
    """The backward op's arguments; grad_out or grad_mask is None when that output was unused."""
    check_inputs(q, k, v, num_heads, scale, op)
    B, Q, _ = q.shape
    named = [("q", q), ("out", out)]
    _checks.check_tensor(op, "out", out, 3)
    _checks.check_shape(op, "out", out, q.shape, "the shape of 'q'")
    if grad_out is not None:
        _checks.check_tensor(op, "grad_out", grad_out, 3)
        _checks.check_shape(op, "grad_out", grad_out, q.shape, "the shape of 'q'")
        named.append(("grad_out", grad_out))
    if grad_mask is not None:
        _checks.check_tensor(op, "grad_mask", grad_mask, 3)
        _checks.check_shape(op, "grad_mask", grad_mask, (B, Q, k.shape[1]), "(B, Q, L)")
        named.append(("grad_mask", grad_mask))
    _checks.check_same(op, named)
    _checks.check_saved_lse(op, lse, (B, num_heads, Q), "(B, num_heads, Q)")
    _checks.check_same_device(op, [("q", q), ("lse", lse)])
