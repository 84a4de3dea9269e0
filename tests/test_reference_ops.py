"""The reference ops against the naive implementations in tests/naive.py, forward and gradients."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.ops.cswin_attention import stripe_heads
from hrvit_kernels.testing import assert_close_fp32, forward_backward, non_contiguous, randn
from parity_cases import CSWIN_CASES
from naive import attention_to_mask_naive, cswin_attention_naive, mix_conv_gelu_naive


@pytest.mark.parametrize("B,H,W,C,sw,hd", CSWIN_CASES)
@pytest.mark.parametrize("alias_kv", [True, False])
def test_cswin_reference_matches_naive(B, H, W, C, sw, hd, alias_kv):
    q = randn(B, H * W, C, requires_grad=True)
    v = randn(B, H * W, C, requires_grad=True)
    k = v if alias_kv else randn(B, H * W, C, requires_grad=True)
    heads, used = stripe_heads(C, hd)
    inputs = (q, v) if alias_kv else (q, k, v)

    def ours(*t):
        return hk.cswin_attention(t[0], t[1], t[-1], (H, W), sw, hd, backend="reference")

    def naive(*t):
        return cswin_attention_naive(t[0], t[1], t[-1], H, W, sw, heads, used, used ** -0.5)

    (out,), grads, g = forward_backward(ours, inputs)
    (expected,), expected_grads, _ = forward_backward(naive, inputs, g)
    assert_close_fp32(out, expected, "output")
    for name, a, e in zip(["q", "k/v" if alias_kv else "k", "v"], grads, expected_grads):
        assert_close_fp32(a, e, f"grad {name}")


def test_cswin_gradcheck_fp64():
    q, k, v = (randn(1, 5 * 3, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(
        lambda q, k, v: hk.cswin_attention(q, k, v, (5, 3), 2, 2, backend="reference"), (q, k, v))


def test_cswin_noncontiguous_and_no_grad():
    B, H, W, C = 2, 6, 5, 64
    q, v = (non_contiguous(randn(B, H * W, C)) for _ in range(2))
    out = hk.cswin_attention(q, v, v, (H, W), 2, 16, backend="reference")
    assert_close_fp32(out, cswin_attention_naive(q, v, v, H, W, 2, 2, 16, 16 ** -0.5), "output")


def test_cswin_custom_scale():
    q, k, v = (randn(1, 16, 32) for _ in range(3))
    out = hk.cswin_attention(q, k, v, (4, 4), 2, 16, scale=0.3)
    assert_close_fp32(out, cswin_attention_naive(q, k, v, 4, 4, 2, 1, 16, 0.3), "output")


MIX_CASES = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 3, 3, 2), (2, 6, 6, 13), (1, 4, 5, 36)]


@pytest.mark.parametrize("B,H,W,R", MIX_CASES)
def test_mix_conv_gelu_reference_matches_naive(B, H, W, R):
    split = R // 2
    x = randn(B, H * W, R, requires_grad=True)
    params = (randn(split, 1, 3, 3, requires_grad=True), randn(split, requires_grad=True),
              randn(R - split, 1, 5, 5, requires_grad=True), randn(R - split, requires_grad=True))
    ours = lambda x, *p: hk.mix_conv_gelu(x, (H, W), *p, backend="reference")  # noqa: E731
    naive = lambda x, *p: mix_conv_gelu_naive(x, H, W, *p)  # noqa: E731
    (out,), grads, g = forward_backward(ours, (x, *params))
    (expected,), expected_grads, _ = forward_backward(naive, (x, *params), g)
    assert_close_fp32(out, expected, "output")
    for name, a, e in zip(["x", "weight3", "bias3", "weight5", "bias5"], grads, expected_grads):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_mix_conv_gelu_gradcheck_fp64():
    H, W, R = 4, 3, 6
    args = [randn(1, H * W, R), randn(3, 1, 3, 3), randn(3), randn(3, 1, 5, 5), randn(3)]
    args = [a.double().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(
        lambda x, *p: hk.mix_conv_gelu(x, (H, W), *p, backend="reference"), tuple(args))


ATM_CASES = [(2, 5, 7, 32, 2), (1, 3, 11, 48, 3), (2, 150, 40, 64, 4), (1, 1, 1, 16, 1)]


@pytest.mark.parametrize("B,Q,L,C,heads", ATM_CASES)
def test_attention_to_mask_reference_matches_naive(B, Q, L, C, heads):
    q, k, v = randn(B, Q, C, requires_grad=True), randn(B, L, C, requires_grad=True), randn(B, L, C, requires_grad=True)
    scale = (C // heads) ** -0.5
    ours = lambda *t: hk.attention_to_mask(*t, heads, backend="reference")  # noqa: E731
    naive = lambda *t: attention_to_mask_naive(*t, heads, scale)  # noqa: E731
    outs, grads, g = forward_backward(ours, (q, k, v))
    expected, expected_grads, _ = forward_backward(naive, (q, k, v), g)
    for name, a, e in zip(["out", "mask_logits"], outs, expected):
        assert_close_fp32(a, e, name)
    for name, a, e in zip("qkv", grads, expected_grads):
        assert_close_fp32(a, e, f"grad {name}")


def test_attention_to_mask_gradcheck_fp64():
    q, k, v = randn(1, 3, 8, dtype=torch.float64, requires_grad=True), *(
        randn(1, 5, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda *t: hk.attention_to_mask(*t, 2, backend="reference"), (q, k, v))
