"""The C++ kernels (hrvit_kernels._C) against the reference: forward and every gradient, odd sizes,
non-contiguous inputs, NaN-poisoned outputs (conftest), opcheck and torch.compile."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_close_fp32, forward_backward, non_contiguous, randn

pytestmark = pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built (pip install -e .)")

MIX_CASES = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 1, 1, 2), (2, 6, 6, 13), (1, 4, 5, 36), (3, 2, 11, 720)]


def _mix_inputs(B, H, W, R, requires_grad=True, dtype=torch.float32):
    split = R // 2
    return (randn(B, H * W, R, requires_grad=requires_grad, dtype=dtype),
            randn(split, 1, 3, 3, requires_grad=requires_grad, dtype=dtype),
            randn(split, requires_grad=requires_grad, dtype=dtype),
            randn(R - split, 1, 5, 5, requires_grad=requires_grad, dtype=dtype),
            randn(R - split, requires_grad=requires_grad, dtype=dtype))


def _mix(backend, H, W):
    return lambda x, *p: hk.mix_conv_gelu(x, (H, W), *p, backend=backend)


@pytest.mark.parametrize("B,H,W,R", MIX_CASES)
def test_mix_conv_gelu_cpp_matches_reference(B, H, W, R):
    inputs = _mix_inputs(B, H, W, R)
    (out,), grads, g = forward_backward(_mix("cpp", H, W), inputs)
    (expected,), expected_grads, _ = forward_backward(_mix("reference", H, W), inputs, g)
    assert_close_fp32(out, expected, "output")
    for name, a, e in zip(["x", "weight3", "bias3", "weight5", "bias5"], grads, expected_grads):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_mix_conv_gelu_cpp_non_contiguous_input():
    B, H, W, R = 2, 5, 6, 12
    x, *params = _mix_inputs(B, H, W, R)
    x = non_contiguous(x)
    (out,), grads, g = forward_backward(_mix("cpp", H, W), (x, *params))
    (expected,), expected_grads, _ = forward_backward(_mix("reference", H, W), (x, *params), g)
    assert_close_fp32(out, expected, "output")
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_mix_conv_gelu_cpp_without_grad():
    inputs = _mix_inputs(1, 4, 4, 6, requires_grad=False)
    assert_close_fp32(hk.mix_conv_gelu(inputs[0], (4, 4), *inputs[1:], backend="cpp"),
                      hk.mix_conv_gelu(inputs[0], (4, 4), *inputs[1:], backend="reference"), "output")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mix_conv_gelu_cpp_low_precision_converts_at_the_boundary(dtype):
    inputs = _mix_inputs(1, 5, 5, 8, requires_grad=False, dtype=dtype)
    out = hk.mix_conv_gelu(inputs[0], (5, 5), *inputs[1:], backend="cpp")
    assert out.dtype == dtype
    expected = hk.mix_conv_gelu(*(t.float() for t in inputs[:1]), (5, 5), *(t.float() for t in inputs[1:]),
                                backend="reference")
    torch.testing.assert_close(out.float(), expected.to(dtype).float(), atol=2e-2, rtol=2e-2)


def test_mix_conv_gelu_cpp_weight_grads_do_not_depend_on_thread_count():
    inputs = _mix_inputs(2, 9, 10, 10)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, grads1, g = forward_backward(_mix("cpp", 9, 10), inputs)
        torch.set_num_threads(max(2, threads))
        _, grads2, _ = forward_backward(_mix("cpp", 9, 10), inputs, g)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


def test_mix_conv_gelu_cpp_opcheck():
    x, w3, b3, w5, b5 = _mix_inputs(2, 3, 5, 10)
    torch.library.opcheck(torch.ops.hrvit.mix_conv_gelu_cpp.default, (x, 3, 5, w3, b3, w5, b5))
    g = randn(2, 15, 10)
    torch.library.opcheck(torch.ops.hrvit.mix_conv_gelu_cpp_bwd.default,
                          tuple(t.detach() for t in (g, x)) + (3, 5) + tuple(t.detach() for t in (w3, b3, w5, b5)))


def test_mix_conv_gelu_cpp_compiles_fullgraph():
    inputs = _mix_inputs(1, 4, 6, 8)
    fn = _mix("cpp", 4, 6)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    (out,), grads, g = forward_backward(compiled, inputs)
    (expected,), expected_grads, _ = forward_backward(fn, inputs, g)
    torch.testing.assert_close(out, expected)
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a, e)


def test_mix_conv_gelu_cpp_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    x, *p = _mix_inputs(2, 4, 5, 12, requires_grad=False)
    with FlopCounterMode(display=False) as counter:
        hk.mix_conv_gelu(x, (4, 5), *p, backend="cpp")
    assert counter.get_total_flops() == 2 * 2 * 20 * (9 * 6 + 25 * 6)
