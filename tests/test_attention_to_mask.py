"""attention_to_mask (SegViT's ATM) on every backend, one case list: the reference against a naive loop
implementation, each kernel against the reference (both outputs and every gradient, fp32 / fp16 / bf16),
gradients of one output, strided inputs, any thread count, sharp logits, opcheck and torch.compile."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import (assert_close_fp32, assert_compiled_matches_eager, forward_backward,
                                  non_contiguous, randn)
from naive import attention_to_mask_naive
from op_cases import (KERNEL_BACKENDS, atm, cases, compare_sharp_logits, compare_with_reference, device_of,
                      skip_outside_the_interpreter_subset, with_dtypes)

# (B, Q, L, C, heads): one key, one query, odd counts, more keys than one key block (128), SegViT's 150
# class queries, head dims 16-64.
CASES = [(2, 5, 7, 32, 2), (1, 3, 11, 48, 3), (1, 33, 50, 48, 3), (1, 33, 130, 48, 3), (1, 17, 40, 64, 2),
         (2, 150, 40, 64, 4), (1, 150, 400, 64, 4), (2, 1, 1, 16, 1), (1, 1, 1, 16, 1), (1, 17, 300, 128, 2)]
INTERPRETER_SUBSET = [(2, 5, 7, 32, 2), (1, 33, 50, 48, 3), (1, 17, 40, 64, 2), (2, 1, 1, 16, 1)]


def _inputs(B, Q, L, C, dtype=torch.float32, device="cpu"):
    return tuple(randn(B, n, C, dtype=dtype, device=device, requires_grad=True) for n in (Q, L, L))


@pytest.mark.parametrize("B,Q,L,C,heads", CASES)
def test_reference_matches_naive(B, Q, L, C, heads):
    scale = (C // heads) ** -0.5
    compare_with_reference(atm("reference", heads), lambda *t: attention_to_mask_naive(*t, heads, scale),
                           _inputs(B, Q, L, C), torch.float32, "reference")


@pytest.mark.parametrize("backend,dtype", with_dtypes())
@pytest.mark.parametrize("B,Q,L,C,heads", cases(CASES, INTERPRETER_SUBSET))
def test_kernel_matches_reference(request, backend, dtype, B, Q, L, C, heads):
    skip_outside_the_interpreter_subset(request, backend)
    compare_with_reference(atm(backend, heads), atm("reference", heads), _inputs(B, Q, L, C, dtype, device_of(backend)),
                           dtype, backend)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("used", [0, 1], ids=["out_only", "mask_only"])
def test_gradients_of_one_output(backend, used):
    inputs = _inputs(1, 9, 20, 32, device=device_of(backend))
    pick = lambda name: (lambda *t: atm(name, 2)(*t)[used])  # noqa: E731
    _, grads, g = forward_backward(pick(backend), inputs)
    expected = torch.autograd.grad(pick("reference")(*inputs), inputs, g, allow_unused=True)
    for a, e in zip(grads, expected):
        assert_close_fp32(a, torch.zeros_like(a) if e is None else e, "grad")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_strided_inputs(backend):
    q, k, v = (non_contiguous(randn(2, n, 32, device=device_of(backend), requires_grad=True)) for n in (6, 11, 11))
    compare_with_reference(atm(backend, 4), atm("reference", 4), (q, k, v), torch.float32, "strided")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")
def test_cpp_any_thread_count(B, threads):
    """With fewer batch elements than threads the C++ forward splits each element's heads into groups (1, 2
    or 4 groups of 4 heads here) whose mask sums are added at the end."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        compare_with_reference(atm("cpp", 4), atm("reference", 4), _inputs(B, 70, 130, 64), torch.float32, "cpp")
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_sharp_logits(backend):
    """Logits of standard deviation ~150 over 300 keys: as close to float64 as the float32 reference."""
    inputs = tuple(randn(1, n, 64, scale=12.0, device=device_of(backend), requires_grad=True) for n in (40, 300, 300))
    compare_sharp_logits(lambda impl: atm(impl, 2), backend, inputs)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck_and_fullgraph_compile(backend):
    q, k, v = _inputs(1, 6, 9, 32, device=device_of(backend))
    torch.library.opcheck(getattr(torch.ops.hrvit, f"attention_to_mask_{backend}").default, (q, k, v, 4, 0.25))
    assert_compiled_matches_eager(atm(backend, 4), (q, k, v))


def test_reference_gradcheck_fp64():
    q, k, v = (randn(1, n, 8, dtype=torch.float64, requires_grad=True) for n in (3, 5, 5))
    assert torch.autograd.gradcheck(lambda *t: hk.attention_to_mask(*t, 2, backend="reference"), (q, k, v))
