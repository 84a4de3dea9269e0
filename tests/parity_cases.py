"""Shapes, call wrappers and checks shared by the kernel parity tests of every backend."""
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_close_fp32, forward_backward, randn

# (B, H, W, C, stripe_width, head_dim): odd sides, sides not multiples of the stripe width, batch 1,
# head dims 16/24/32/48/64, the C/2 < head_dim fallback (C=32, head_dim 32), a stripe wider than the
# image, and stripes spanning several key tiles (13 x 5 with stripe 3: 39- and 65-token stripes; 30 x 10
# with stripe 10: 300 tokens, more than the C++ kernels' 128-key block).
CSWIN_CASES = [
    (2, 8, 8, 64, 2, 32),
    (1, 7, 9, 96, 2, 24),
    (2, 11, 6, 64, 7, 16),
    (1, 5, 13, 32, 1, 32),
    (1, 9, 7, 96, 3, 48),
    (1, 6, 10, 128, 4, 64),
    (2, 4, 3, 32, 7, 16),
    (1, 13, 5, 32, 3, 16),
    (1, 30, 10, 32, 10, 16),
]


def cswin(backend, H, W, stripe_width, head_dim, alias):
    """cswin_attention on (q, k) when k is v (alias), else on (q, k, v)."""
    def call(q, k, *rest):
        return hk.cswin_attention(q, k, k if alias else rest[0], (H, W), stripe_width, head_dim, backend=backend)
    return call


def atm(backend, heads):
    """attention_to_mask on (q, k, v) with ``heads`` heads."""
    return lambda q, k, v: hk.attention_to_mask(q, k, v, heads, backend=backend)


def check_atm_gradients_of_one_output(backend, used: int, device="cpu"):
    """Gradients when only output ``used`` (0: out, 1: mask logits) feeds the loss match the reference."""
    inputs = tuple(randn(1, n, 32, device=device, requires_grad=True) for n in (9, 20, 20))
    pick = lambda name: (lambda *t: atm(name, 2)(*t)[used])  # noqa: E731
    _, grads, g = forward_backward(pick(backend), inputs)
    expected = torch.autograd.grad(pick("reference")(*inputs), inputs, g, allow_unused=True)
    for a, e in zip(grads, expected):
        assert_close_fp32(a, torch.zeros_like(a) if e is None else e, "grad")
