"""cswin_attention (HRViT's stripe attention) on every backend, one case list: the reference against a
naive loop implementation, each kernel against the reference (forward and every gradient, fp32 / fp16 /
bf16), strided and aliased inputs, sharp logits, opcheck and torch.compile."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.ops.cswin_attention import stripe_heads
from hrvit_kernels.testing import (assert_close_fp32, assert_compiled_matches_eager, forward_backward,
                                  non_contiguous, randn)
from naive import cswin_attention_naive
from op_cases import (KERNEL_BACKENDS, cases, compare_sharp_logits, compare_with_reference, cswin, device_of,
                      skip_outside_the_interpreter_subset, with_dtypes)

# (B, H, W, C, stripe_width, head_dim): odd sides, sides not multiples of the stripe width, batch 1,
# head dims 16/24/32/48/64, the C/2 < head_dim fallback (C=32, head_dim 32), a stripe wider than the
# image, and stripes spanning several key tiles (13 x 5 with stripe 3: 39- and 65-token stripes; 30 x 10
# with stripe 10: 300 tokens, more than the C++ kernels' 128-key block).
CASES = [
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
ALIAS = pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])


@pytest.mark.parametrize("B,H,W,C,sw,hd", CASES)
@ALIAS
def test_reference_matches_naive(B, H, W, C, sw, hd, alias):
    heads, used = stripe_heads(C, hd)
    inputs = tuple(randn(B, H * W, C, requires_grad=True) for _ in range(2 if alias else 3))

    def naive(q, k, *rest):
        return cswin_attention_naive(q, k, k if alias else rest[0], H, W, sw, heads, used, used ** -0.5)

    compare_with_reference(cswin("reference", H, W, sw, hd, alias), naive, inputs, torch.float32, "reference")


@pytest.mark.parametrize("backend,dtype", with_dtypes())
@pytest.mark.parametrize("B,H,W,C,sw,hd", cases(CASES, interpreter_subset=CASES))
@ALIAS
def test_kernel_matches_reference(request, backend, dtype, B, H, W, C, sw, hd, alias):
    skip_outside_the_interpreter_subset(request, backend)
    inputs = tuple(randn(B, H * W, C, dtype=dtype, device=device_of(backend), requires_grad=True)
                   for _ in range(2 if alias else 3))
    compare_with_reference(cswin(backend, H, W, sw, hd, alias), cswin("reference", H, W, sw, hd, alias), inputs,
                           dtype, backend)


@pytest.mark.parametrize("backend", ["reference", *KERNEL_BACKENDS])
def test_strided_halves_of_a_projection_and_a_poisoned_gap(backend):
    """q and v as the two halves of one projection output (HRViT's to_qkv), k inside a NaN-filled buffer."""
    B, H, W, C = 2, 6, 7, 64
    device = device_of(backend)
    qv = randn(B, H * W, 2 * C, device=device, requires_grad=True)
    q, v = qv.chunk(2, dim=-1)
    k = non_contiguous(randn(B, H * W, C, device=device, requires_grad=True))
    for keys in (v, k):
        compare_with_reference(cswin(backend, H, W, 3, 32, True), cswin("reference", H, W, 3, 32, True), (q, keys),
                               torch.float32, "strided")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_aliased_kv_gets_one_gradient_equal_to_the_sum(backend):
    B, H, W, C = 1, 5, 6, 32
    device = device_of(backend)
    q, v = randn(B, H * W, C, device=device, requires_grad=True), randn(B, H * W, C, device=device, requires_grad=True)
    _, (gq, gv), g = forward_backward(cswin(backend, H, W, 2, 16, True), (q, v))
    v2, k2 = v.detach().clone().requires_grad_(), v.detach().clone().requires_grad_()
    _, (_, gk_sep, gv_sep), _ = forward_backward(cswin(backend, H, W, 2, 16, False), (q, k2, v2), g)
    assert_close_fp32(gv, gk_sep + gv_sep, "grad of the aliased k/v")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_sharp_logits(backend):
    """Logits of standard deviation ~150: most probabilities underflow (exactly 0, no subnormals) and the
    running maximum jumps between key blocks (stripes of over 128 tokens). Outputs and gradients are as
    close to float64 as the float32 reference's are."""
    H, W = 70, 3
    inputs = tuple(randn(1, H * W, 64, scale=12.0, device=device_of(backend), requires_grad=True) for _ in range(2))
    compare_sharp_logits(lambda impl: cswin(impl, H, W, 2, 32, True), backend, inputs)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck_and_fullgraph_compile(backend):
    B, H, W, C = 1, 4, 5, 32
    device = device_of(backend)
    q, k, v = (randn(B, H * W, C, device=device, requires_grad=True) for _ in range(3))
    heads, used = stripe_heads(C, 16)
    op = getattr(torch.ops.hrvit, f"cswin_attention_{backend}").default
    for args in ((q, k, v), (q, v, None)):
        torch.library.opcheck(op, args + (H, W, 2, heads, used, used ** -0.5))
    assert_compiled_matches_eager(cswin(backend, H, W, 2, 16, True), (q, v))


def test_reference_gradcheck_fp64_custom_scale_and_no_grad():
    q, k, v = (randn(1, 5 * 3, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda q, k, v: hk.cswin_attention(q, k, v, (5, 3), 2, 2, backend="reference"),
                                    (q, k, v))
    q, k, v = (randn(1, 16, 32) for _ in range(3))
    assert_close_fp32(hk.cswin_attention(q, k, v, (4, 4), 2, 16, scale=0.3),
                      cswin_attention_naive(q, k, v, 4, 4, 2, 1, 16, 0.3), "custom scale")
