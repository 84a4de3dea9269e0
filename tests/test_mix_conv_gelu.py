"""mix_conv_gelu (MixCFN's mixed-scale depthwise convolution + GELU) on every backend, one case list: the
reference against a naive loop implementation, each kernel against the reference (forward and every
gradient, fp32 / fp16 / bf16), strided input, weight gradients independent of threads and runs, opcheck
and torch.compile."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_close_fp32, assert_compiled_matches_eager, forward_backward, non_contiguous
from naive import mix_conv_gelu_naive
from op_cases import (KERNEL_BACKENDS, cases, compare_with_reference, device_of, mix, mix_inputs,
                      skip_outside_the_interpreter_subset, with_dtypes)

# (B, H, W, R): odd sizes, 1 x 1 images, R = 2, a channel block straddling the split (R/2 not a multiple
# of the block), HRViT-sized R = 720 and 64, and a row wide enough (30) for the C++ kernel's 12-pixel
# blocks to run whole inside the image between two cut by its edges.
CASES = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 1, 1, 2), (1, 3, 3, 2), (2, 6, 6, 13), (2, 6, 6, 36), (1, 4, 5, 36),
         (3, 2, 11, 720), (1, 3, 17, 64), (1, 4, 30, 40)]
INTERPRETER_SUBSET = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 3, 3, 2), (2, 6, 6, 36)]
SUMMED = (2, 3, 4, 5)  # results 2..5: the weight and bias gradients, sums over every pixel


@pytest.mark.parametrize("B,H,W,R", CASES)
def test_reference_matches_naive(B, H, W, R):
    compare_with_reference(mix("reference", H, W), lambda x, *p: mix_conv_gelu_naive(x, H, W, *p),
                           mix_inputs(B, H, W, R), torch.float32, "reference", summed=SUMMED)


@pytest.mark.parametrize("backend,dtype", with_dtypes())
@pytest.mark.parametrize("B,H,W,R", cases(CASES, INTERPRETER_SUBSET))
def test_kernel_matches_reference(request, backend, dtype, B, H, W, R):
    skip_outside_the_interpreter_subset(request, backend)
    compare_with_reference(mix(backend, H, W), mix("reference", H, W),
                           mix_inputs(B, H, W, R, dtype, device_of(backend)), dtype, backend, summed=SUMMED)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_strided_input_and_no_grad(backend):
    device = device_of(backend)
    x, *params = mix_inputs(2, 5, 6, 12, device=device)
    compare_with_reference(mix(backend, 5, 6), mix("reference", 5, 6), (non_contiguous(x), *params), torch.float32,
                           "strided", summed=SUMMED)
    x, *params = mix_inputs(1, 4, 4, 6, device=device, requires_grad=False)
    assert_close_fp32(mix(backend, 4, 4)(x, *params), mix("reference", 4, 4)(x, *params), "without grad")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_weight_gradients_do_not_depend_on_threads_or_runs(backend):
    """Weight gradients are reduced over fixed blocks in a fixed order."""
    inputs = mix_inputs(2, 9, 10, 10, device=device_of(backend))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, grads1, g = forward_backward(mix(backend, 9, 10), inputs)
        torch.set_num_threads(max(2, threads))
        _, grads2, _ = forward_backward(mix(backend, 9, 10), inputs, g)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck_and_fullgraph_compile(backend):
    x, w3, b3, w5, b5 = mix_inputs(2, 3, 5, 10, device=device_of(backend))
    torch.library.opcheck(getattr(torch.ops.hrvit, f"mix_conv_gelu_{backend}").default, (x, 3, 5, w3, b3, w5, b5))
    g = torch.randn_like(x)
    torch.library.opcheck(getattr(torch.ops.hrvit, f"mix_conv_gelu_{backend}_bwd").default,
                          tuple(t.detach() for t in (g, x)) + (3, 5) + tuple(t.detach() for t in (w3, b3, w5, b5)))
    assert_compiled_matches_eager(mix(backend, 3, 5), (x, w3, b3, w5, b5))


def test_reference_gradcheck_fp64():
    args = tuple(t.detach().double().requires_grad_() for t in mix_inputs(1, 4, 3, 6))
    assert torch.autograd.gradcheck(lambda x, *p: hk.mix_conv_gelu(x, (4, 3), *p, backend="reference"), args)
