"""Input checks of the stripe attention, shared by the public function and the registered custom ops
(which torch.ops also exposes): every message names the argument, and no call reaches a kernel with
sizes that would make it read or write past a tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks

OP = "cswin_attention"


def stripe_heads(channels: int, head_dim: int) -> tuple[int, int]:
    """(heads, used head dim) of each half of ``channels``.

    Each half has (C/2) // head_dim heads; when C/2 < head_dim it falls back to one head of C/2
    channels (HRViT-b1's first branch: C/2 = 16 < 32).
    """
    half = channels // 2
    if half < head_dim:
        return 1, half
    return half // head_dim, head_dim


def effective_stripe_width(stripe_width: int, H: int, W: int) -> int:
    """A stripe as wide as the longer side already covers the whole image in both halves: wider ones
    give the same result, so kernels and loops see at most max(H, W) (a width of 2**62 would otherwise
    size their loops and buffers)."""
    return min(stripe_width, max(H, W))


def check_inputs(q, k, v, hw, stripe_width, head_dim, scale, op: str = OP):
    """The public function's arguments; returns ((H, W), heads, used head dim)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_tensor(op, name, t, 3)
    _checks.check_same(op, [("q", q), ("k", k), ("v", v)])
    for name, t in (("k", k), ("v", v)):
        _checks.check_shape(op, name, t, q.shape, "the shape of 'q', (B, N, C)")
    B, N, C = q.shape
    if C < 2 or C % 2:
        raise ValueError(f"{op}: the channel count C of 'q' must be even (two halves), got C = {C}")
    H, W = _checks.check_hw(op, hw, N, "q")
    _checks.check_positive_int(op, "stripe_width", stripe_width)
    _checks.check_positive_int(op, "head_dim", head_dim)
    heads, used = stripe_heads(C, head_dim)
    if heads * used != C // 2:
        raise ValueError(f"{op}: each half has C/2 = {C // 2} channels, which is not a multiple of "
                         f"head_dim = {head_dim}; accepted: C/2 divisible by head_dim, or C/2 < head_dim")
    _checks.check_scale(op, scale)
    return (H, W), heads, used


def check_op_inputs(op: str, q, k, v, H, W, stripe_width, heads, head_dim, scale) -> None:
    """The custom op's arguments: the public ones with v = None for k is v, and the heads and head dim
    of each half given explicitly."""
    _, expected_heads, used = check_inputs(q, k, k if v is None else v, (H, W), stripe_width, head_dim,
                                           scale, op)
    _checks.check_positive_int(op, "heads", heads)
    if (heads, head_dim) != (expected_heads, used):
        raise ValueError(f"{op}: arguments 'heads' = {heads} and 'head_dim' = {head_dim} do not split each "
                         f"half of C = {q.shape[2]} channels; accepted: heads = {expected_heads}, "
                         f"head_dim = {used}")


def check_op_backward_inputs(op: str, grad_out, q, k, v, out, lse, H, W, stripe_width, heads, head_dim,
                             scale) -> None:
    check_op_inputs(op, q, k, v, H, W, stripe_width, heads, head_dim, scale)
    B, N, _ = q.shape
    for name, t in (("grad_out", grad_out), ("out", out)):
        _checks.check_tensor(op, name, t, 3)
        _checks.check_shape(op, name, t, q.shape, "the shape of 'q'")
    _checks.check_saved_lse(op, lse, (B, 2 * heads, N), "(B, 2 * heads, N)")
    _checks.check_same(op, [("q", q), ("grad_out", grad_out), ("out", out)])
    _checks.check_same_device(op, [("q", q), ("lse", lse)])
