"""Input checks of HLG's two attentions, shared by the public functions and the registered custom ops: every
message names the argument, and no call reaches a kernel with sizes that would make it read or write past a
tensor's end."""
from __future__ import annotations

from hrvit_kernels.ops import _checks

LOCAL_OP = "hlg_local_attention"
GLOBAL_OP = "hlg_global_attention"
WINDOW = 7  # window side: 7 x 7 tokens


def _check_heads(op: str, channels: int, heads: int) -> None:
    if channels < 1:
        raise ValueError(f"{op}: the tensors must have at least one channel, got C = {channels}")
    if channels % heads:
        raise ValueError(f"{op}: the channel count C = {channels} must be divisible by the number of heads "
                         f"(bias.shape[0]) = {heads}")


def check_local_inputs(q, v, hw, dilated, bias, scale, op: str = LOCAL_OP) -> tuple[int, int]:
    for name, t in (("q", q), ("v", v)):
        _checks.check_tensor(op, name, t, 3)
    _checks.check_same(op, [("q", q), ("v", v)])
    _checks.check_shape(op, "v", v, q.shape, "the shape of 'q', (B, H*W, C)")
    h, w = _checks.check_hw(op, hw, q.shape[1], "q")
    if not isinstance(dilated, bool):
        raise TypeError(f"{op}: argument 'dilated' must be a bool, got {dilated!r}")
    _checks.check_tensor(op, "bias", bias, 3)
    _checks.check_same_device(op, [("q", q), ("bias", bias)])
    area = WINDOW * WINDOW
    if tuple(bias.shape[1:]) != (area, area) or bias.shape[0] < 1:
        raise ValueError(f"{op}: argument 'bias' must have shape (heads, {area}, {area}) (a bias per head for "
                         f"every query and key of a {WINDOW}x{WINDOW} window), got {tuple(bias.shape)}")
    _check_heads(op, q.shape[2], bias.shape[0])
    _checks.check_scale(op, scale)
    return h, w


def check_global_inputs(q, k, v, hw, bias_table, scale, key_grid=None, op: str = GLOBAL_OP) -> tuple[int, int, int, int]:
    """Returns (H, W, gh, gw): the map and the key grid (the map itself when ``key_grid`` is None)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.check_tensor(op, name, t, 3)
    _checks.check_same(op, [("q", q), ("k", k), ("v", v)])
    B, N, C = q.shape
    h, w = _checks.check_hw(op, hw, N, "q")
    gh, gw = (h, w) if key_grid is None else _checks.check_size_pair(op, "key_grid", key_grid)
    if k.shape[0] != B or k.shape[2] != C:
        raise ValueError(f"{op}: argument 'k' must have shape (B={B}, M, C={C}), got {tuple(k.shape)}")
    _checks.check_shape(op, "v", v, k.shape, "the shape of 'k', (B, M, C)")
    if not 1 <= k.shape[1] <= gh * gw:
        raise ValueError(f"{op}: argument 'k' must have between 1 and {gh * gw} keys (key m sits at cell "
                         f"(m // {gw}, m % {gw}) of the {gh}x{gw} key grid), got M = {k.shape[1]}")
    _checks.check_tensor(op, "bias_table", bias_table, 2)
    _checks.check_same_device(op, [("q", q), ("bias_table", bias_table)])
    needed = (h + gh - 2) * (2 * gw - 1) + w + gw - 1
    if bias_table.shape[1] < needed or bias_table.shape[0] < 1:
        raise ValueError(f"{op}: argument 'bias_table' must have shape (heads, at least {needed}) (its largest "
                         f"index for a {h}x{w} map against a {gh}x{gw} key grid is {needed - 1}; (2H-1)*(2W-1) "
                         f"for keys on the map), got {tuple(bias_table.shape)}")
    _check_heads(op, C, bias_table.shape[0])
    _checks.check_scale(op, scale)
    return h, w, gh, gw


def _check_saved(op, grad_out, q, out, lse, heads) -> None:
    for name, t in (("grad_out", grad_out), ("out", out)):
        _checks.check_tensor(op, name, t, 3)
        _checks.check_shape(op, name, t, q.shape, "the shape of 'q'")
    _checks.check_same(op, [("q", q), ("out", out), ("grad_out", grad_out)])
    _checks.check_saved_lse(op, lse, (q.shape[0], heads, q.shape[1]), "(B, heads, H*W)")
    _checks.check_same_device(op, [("q", q), ("lse", lse)])


def check_local_backward_inputs(op, grad_out, q, v, out, lse, H, W, dilated, bias, scale) -> None:
    """The backward op's arguments."""
    check_local_inputs(q, v, (H, W), dilated, bias, scale, op)
    _check_saved(op, grad_out, q, out, lse, bias.shape[0])


def check_global_backward_inputs(op, grad_out, q, k, v, out, lse, H, W, grid_h, grid_w, table, scale) -> None:
    """The backward op's arguments."""
    check_global_inputs(q, k, v, (H, W), table, scale, (grid_h, grid_w), op)
    _check_saved(op, grad_out, q, out, lse, table.shape[0])
