"""The C++ kernels (hrvit_kernels._C) against the reference: forward and every gradient, odd sizes,
non-contiguous inputs, NaN-poisoned outputs (conftest), opcheck and torch.compile."""
import sys
import threading
import time

import pytest
import torch

import hrvit_kernels as hk
from parity_cases import CSWIN_CASES, atm, check_atm_gradients_of_one_output, cswin
from hrvit_kernels.testing import (assert_as_accurate_as_reference, assert_close_fp32, assert_compiled_matches_eager,
                                  assert_low_precision_close, forward_backward, non_contiguous, randn)

pytestmark = pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built (pip install -e .)")

MIX_CASES = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 1, 1, 2), (2, 6, 6, 13), (1, 4, 5, 36), (3, 2, 11, 720), (1, 3, 17, 64)]


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
    assert_compiled_matches_eager(_mix("cpp", 4, 6), inputs)


def test_mix_conv_gelu_cpp_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    x, *p = _mix_inputs(2, 4, 5, 12, requires_grad=False)
    with FlopCounterMode(display=False) as counter:
        hk.mix_conv_gelu(x, (4, 5), *p, backend="cpp")
    assert counter.get_total_flops() == 2 * 2 * 20 * (9 * 6 + 25 * 6)


# ---------------------------------------------------------------- stripe attention

from hrvit_kernels.ops.cswin_attention import stripe_heads  # noqa: E402


@pytest.mark.parametrize("B,H,W,C,sw,hd", CSWIN_CASES)
@pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])
def test_cswin_attention_cpp_matches_reference(B, H, W, C, sw, hd, alias):
    inputs = tuple(randn(B, H * W, C, requires_grad=True) for _ in range(2 if alias else 3))
    (out,), grads, g = forward_backward(cswin("cpp", H, W, sw, hd, alias), inputs)
    (expected,), expected_grads, _ = forward_backward(cswin("reference", H, W, sw, hd, alias), inputs, g)
    assert_close_fp32(out, expected, "output")
    for name, a, e in zip(["q", "k", "v"], grads, expected_grads):
        assert_close_fp32(a, e, f"grad {name}")


def test_cswin_attention_cpp_reads_strided_halves_of_a_projection():
    """q and v as the two halves of one projection output (HRViT's to_qkv), and a NaN-poisoned gap."""
    B, H, W, C = 2, 6, 7, 64
    qv = randn(B, H * W, 2 * C, requires_grad=True)
    q, v = qv.chunk(2, dim=-1)
    k = non_contiguous(randn(B, H * W, C, requires_grad=True))
    for keys in (v, k):
        (out,), grads, g = forward_backward(lambda a, b: cswin("cpp", H, W, 3, 32, True)(a, b), (q, keys))
        (expected,), expected_grads, _ = forward_backward(lambda a, b: cswin("reference", H, W, 3, 32, True)(a, b), (q, keys), g)
        assert_close_fp32(out, expected, "output")
        for a, e in zip(grads, expected_grads):
            assert_close_fp32(a, e, "grad")


def test_cswin_attention_cpp_aliased_kv_gets_one_gradient_equal_to_the_sum():
    B, H, W, C = 1, 5, 6, 32
    q, v = randn(B, H * W, C, requires_grad=True), randn(B, H * W, C, requires_grad=True)
    _, (gq, gv), g = forward_backward(cswin("cpp", H, W, 2, 16, True), (q, v))
    v2 = v.detach().clone().requires_grad_()
    k2 = v.detach().clone().requires_grad_()
    _, (_, gk_sep, gv_sep), _ = forward_backward(cswin("cpp", H, W, 2, 16, False), (q, k2, v2), g)
    assert_close_fp32(gv, gk_sep + gv_sep, "grad of the aliased k/v")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cswin_attention_cpp_low_precision(dtype):
    B, H, W, C = 1, 6, 5, 64
    q, k, v = (randn(B, H * W, C, dtype=dtype) for _ in range(3))
    out = hk.cswin_attention(q, k, v, (H, W), 2, 32, backend="cpp")
    ref_same = hk.cswin_attention(q, k, v, (H, W), 2, 32, backend="reference")
    ref64 = hk.cswin_attention(q.double(), k.double(), v.double(), (H, W), 2, 32, backend="reference")
    assert out.dtype == dtype
    assert_low_precision_close(out, ref_same, ref64, "output")


def test_cswin_attention_cpp_opcheck():
    B, H, W, C = 1, 4, 5, 32
    q, k, v = (randn(B, H * W, C, requires_grad=True) for _ in range(3))
    heads, used = stripe_heads(C, 16)
    for args in ((q, k, v), (q, v, None)):
        torch.library.opcheck(torch.ops.hrvit.cswin_attention_cpp.default, args + (H, W, 2, heads, used, used ** -0.5))


def test_cswin_attention_cpp_compiles_fullgraph():
    B, H, W, C = 1, 5, 4, 32
    inputs = (randn(B, H * W, C, requires_grad=True), randn(B, H * W, C, requires_grad=True))
    assert_compiled_matches_eager(cswin("cpp", H, W, 2, 16, True), inputs)


def test_cswin_attention_flop_formula_counts_real_tokens_only():
    from hrvit_kernels.ops.cswin_attention.registration import stripe_attention_macs
    from torch.utils.flop_counter import FlopCounterMode

    # H = 5 rows in stripes of 2: lengths 2W, 2W, W; W = 3 columns: lengths 2H, H.
    H, W, C = 5, 3, 32
    expected = 2 * (C // 2) * ((6 ** 2 + 6 ** 2 + 3 ** 2) + (10 ** 2 + 5 ** 2))
    assert stripe_attention_macs(1, H, W, C, 2) == expected
    q = randn(1, H * W, C)
    with FlopCounterMode(display=False) as counter:
        hk.cswin_attention(q, q, q, (H, W), 2, 16, backend="cpp")
    assert counter.get_total_flops() == 2 * expected


# ---------------------------------------------------------------- attention-to-mask

ATM_CASES = [(2, 5, 7, 32, 2), (1, 33, 130, 48, 3), (1, 150, 400, 64, 4), (2, 1, 1, 16, 1), (1, 17, 300, 128, 2)]


@pytest.mark.parametrize("B,Q,L,C,heads", ATM_CASES)
def test_attention_to_mask_cpp_matches_reference(B, Q, L, C, heads):
    inputs = (randn(B, Q, C, requires_grad=True), randn(B, L, C, requires_grad=True), randn(B, L, C, requires_grad=True))
    outs, grads, g = forward_backward(atm("cpp", heads), inputs)
    expected, expected_grads, _ = forward_backward(atm("reference", heads), inputs, g)
    for name, a, e in zip(["out", "mask_logits"], outs, expected):
        assert_close_fp32(a, e, name)
    for name, a, e in zip("qkv", grads, expected_grads):
        assert_close_fp32(a, e, f"grad {name}")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("B", [1, 2])
def test_attention_to_mask_cpp_any_thread_count(B, threads):
    """With fewer batch elements than threads the forward splits each element's heads into groups (1, 2 or
    4 groups of 4 heads here) whose mask sums are added at the end."""
    inputs = (randn(B, 70, 64, requires_grad=True), randn(B, 130, 64, requires_grad=True),
              randn(B, 130, 64, requires_grad=True))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        outs, grads, g = forward_backward(atm("cpp", 4), inputs)
    finally:
        torch.set_num_threads(saved)
    expected, expected_grads, _ = forward_backward(atm("reference", 4), inputs, g)
    for name, a, e in zip(["out", "mask_logits", "grad q", "grad k", "grad v"], outs + grads, expected + expected_grads):
        assert_close_fp32(a, e, name)


@pytest.mark.parametrize("used", [0, 1], ids=["out_only", "mask_only"])
def test_attention_to_mask_cpp_gradients_of_one_output(used):
    check_atm_gradients_of_one_output("cpp", used)


def test_attention_to_mask_cpp_non_contiguous_inputs():
    q, k, v = (non_contiguous(randn(2, n, 32, requires_grad=True)) for n in (6, 11, 11))
    outs, grads, g = forward_backward(atm("cpp", 4), (q, k, v))
    expected, expected_grads, _ = forward_backward(atm("reference", 4), (q, k, v), g)
    for a, e in zip(outs + grads, expected + expected_grads):
        assert_close_fp32(a, e, "output or gradient")


@pytest.mark.parametrize("op", ["cswin_attention", "attention_to_mask"])
def test_attention_cpp_with_sharp_logits(op):
    """Logits of standard deviation ~150: most probabilities underflow (the kernels give exactly 0, no
    subnormals) and the running maximum jumps between key blocks (stripes and key sets of over 128 tokens).
    Outputs and gradients are as close to float64 as the float32 reference's are."""
    if op == "cswin_attention":
        H, W = 70, 3
        inputs = tuple(randn(1, H * W, 64, scale=12.0, requires_grad=True) for _ in range(2))
        make = lambda backend: cswin(backend, H, W, 2, 32, True)  # noqa: E731
    else:
        inputs = tuple(randn(1, n, 64, scale=12.0, requires_grad=True) for n in (40, 300, 300))
        make = lambda backend: atm(backend, 2)  # noqa: E731
    results = {}
    for name, backend, dtype in [("exact", "reference", torch.float64), ("reference", "reference", torch.float32),
                                 ("cpp", "cpp", torch.float32)]:
        cast = tuple(t.detach().to(dtype).requires_grad_() for t in inputs)
        outs, grads, _ = forward_backward(make(backend), cast, seed=1)
        results[name] = [t.double() for t in outs + grads]
    for i, (a, r, e) in enumerate(zip(results["cpp"], results["reference"], results["exact"])):
        assert torch.isfinite(a).all(), f"result {i}: not finite"
        assert_as_accurate_as_reference(a, r, e, f"result {i}", 4.0, 1e-6 * e.abs().max().item())


def test_attention_to_mask_cpp_opcheck_and_compile():
    q, k, v = randn(1, 6, 32, requires_grad=True), randn(1, 9, 32, requires_grad=True), randn(1, 9, 32, requires_grad=True)
    torch.library.opcheck(torch.ops.hrvit.attention_to_mask_cpp.default, (q, k, v, 4, 0.25))
    assert_compiled_matches_eager(atm("cpp", 4), (q, k, v))


# ---------------------------------------------------------------- resize-sum

# (B, C, map sizes, output size): up- and down-sampling, odd and non-integer ratios, a map already at the
# output size first, later or not at all, 1 x 1 maps and outputs, a single map (the final logits resize).
RESIZE_CASES = [
    (1, 3, [(5, 7)], (11, 13)),
    (2, 4, [(17, 18), (9, 9), (5, 5), (3, 2)], (17, 18)),
    (1, 2, [(6, 4), (17, 18)], (17, 18)),
    (2, 3, [(20, 30), (8, 3)], (7, 5)),
    (1, 5, [(1, 1), (2, 3)], (3, 4)),
    (3, 2, [(4, 4)], (1, 1)),
    (1, 6, [(32, 32)], (128, 128)),
]


def _resize(backend, size):
    return lambda *maps: hk.resize_sum(list(maps), size, backend=backend)


@pytest.mark.parametrize("B,C,sizes,size", RESIZE_CASES)
def test_resize_sum_cpp_matches_reference(B, C, sizes, size):
    maps = [randn(B, C, h, w, requires_grad=True) for h, w in sizes]
    (out,), grads, g = forward_backward(_resize("cpp", size), maps)
    (expected,), expected_grads, _ = forward_backward(_resize("reference", size), maps, g)
    assert_close_fp32(out, expected, "output")
    for i, (a, e) in enumerate(zip(grads, expected_grads)):
        assert_close_fp32(a, e, f"grad of maps[{i}]")


def test_resize_sum_cpp_non_contiguous_and_low_precision_inputs():
    maps = [non_contiguous(randn(2, 3, 9, 7, requires_grad=True)), randn(2, 3, 4, 5, requires_grad=True)]
    (out,), grads, g = forward_backward(_resize("cpp", (9, 7)), maps)
    (expected,), expected_grads, _ = forward_backward(_resize("reference", (9, 7)), maps, g)
    for a, e in zip((out, *grads), (expected, *expected_grads)):
        assert_close_fp32(a, e, "output or gradient")
    half = [m.detach().to(torch.bfloat16) for m in maps]
    out = hk.resize_sum(half, (9, 7), backend="cpp")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), hk.resize_sum([m.float() for m in half], (9, 7), backend="reference"),
                               atol=3e-2, rtol=2e-2)


def test_resize_sum_never_returns_or_writes_a_callers_tensor():
    x = randn(1, 2, 4, 4)
    before = x.clone()
    for backend in ("cpp", "reference"):
        out = hk.resize_sum([x], (4, 4), backend=backend)
        assert out.data_ptr() != x.data_ptr()
        out.add_(1)
        assert torch.equal(x, before)


def test_resize_sum_cpp_opcheck_compile_and_macs():
    from hrvit_kernels.flops import count_macs

    maps = [randn(1, 2, 5, 6, requires_grad=True), randn(1, 2, 3, 3, requires_grad=True)]
    torch.library.opcheck(torch.ops.hrvit.resize_sum_cpp.default, (maps, 5, 6))
    torch.library.opcheck(torch.ops.hrvit.resize_backward_cpp.default, (randn(1, 2, 5, 6), 3, 3))
    assert_compiled_matches_eager(_resize("cpp", (5, 6)), maps)
    counted = count_macs(torch.nn.Identity(), maps[0], lambda x: hk.resize_sum([x, maps[1]], (5, 6), backend="cpp"))
    assert counted.total == 4 * 2 * 5 * 6  # one map resized, fvcore's 4 per output element


# ---------------------------------------------------------------- dynamic shapes

def _dynamic_cases():
    """(op, [(fn, inputs) at two sizes]): sizes, and the head counts derived from them, are symbolic in
    a dynamic graph, in the public functions and in the ops' own argument checks alike."""
    def cswin_at(H, W, C):
        inputs = (randn(1, H * W, C, requires_grad=True), randn(1, H * W, C, requires_grad=True))
        return (lambda q, v: hk.cswin_attention(q, v, v, (H, W), 2, 16, backend="cpp")), inputs

    def mix_at(H, W, R):
        return _mix("cpp", H, W), _mix_inputs(1, H, W, R)

    def atm_at(Q, L, C):
        return atm("cpp", C // 16), tuple(randn(1, n, C, requires_grad=True) for n in (Q, L, L))

    def resize_at(h, w):
        return _resize("cpp", (2 * h + 1, w + 3)), [randn(1, 3, h, w, requires_grad=True)]

    return [("cswin_attention", [cswin_at(4, 6, 64), cswin_at(6, 5, 96)]),
            ("mix_conv_gelu", [mix_at(4, 6, 8), mix_at(5, 3, 12)]),
            ("attention_to_mask", [atm_at(5, 9, 32), atm_at(7, 11, 64)]),
            ("resize_sum", [resize_at(4, 5), resize_at(6, 3)])]


@pytest.mark.parametrize("case", range(4), ids=[name for name, _ in _dynamic_cases()])
def test_ops_compile_with_dynamic_shapes(case):
    torch._dynamo.reset()
    _, sized = _dynamic_cases()[case]
    for fn, inputs in sized:
        compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend="aot_eager")
        outs, grads, g = forward_backward(compiled, inputs)
        expected, expected_grads, _ = forward_backward(fn, inputs, g)
        for actual, wanted in zip(outs + grads, expected + expected_grads):
            torch.testing.assert_close(actual, wanted)


# ---------------------------------------------------------------- the GIL

def test_cpp_kernels_release_the_gil(monkeypatch):
    """Every kernel of hrvit_kernels._C lets other Python threads run while it computes.

    With a switch interval of minutes Python never takes the GIL from a thread by force: this thread runs
    only when the worker thread gives it up. A kernel that kept it would see no tick of this thread's
    counter between its entry and its return; one that releases it sees many (each kernel call below takes
    milliseconds, this thread waits on the GIL at most a half-millisecond sleep)."""
    from hrvit_kernels import _ext

    extension, ticks, ticks_during = _ext.ext(), [0], {}

    class TickRecordingExtension:
        def __getattr__(self, name):
            kernel = getattr(extension, name)

            def call(*args):
                before = ticks[0]
                kernel(*args)
                ticks_during[name] = max(ticks_during.get(name, 0), ticks[0] - before)
            return call

    monkeypatch.setattr(_ext, "ext", lambda: TickRecordingExtension())
    x, *mix_params = _mix_inputs(2, 128, 128, 128)
    q, v = randn(2, 128 * 128, 64, requires_grad=True), randn(2, 128 * 128, 64, requires_grad=True)
    atm_inputs = tuple(randn(2, n, 512, requires_grad=True) for n in (150, 1600, 1600))
    logits = randn(1, 32, 128, 128, requires_grad=True)
    runs = [lambda: hk.mix_conv_gelu(x, (128, 128), *mix_params, backend="cpp"),
            lambda: hk.cswin_attention(q, v, v, (128, 128), 1, 32, backend="cpp"),
            lambda: hk.attention_to_mask(*atm_inputs, 16, backend="cpp")[0],
            lambda: hk.resize_sum([logits], (512, 512), backend="cpp")]
    errors, done = [], threading.Event()

    def worker():
        try:
            for run in runs * 2:  # twice: a tick needs this thread scheduled while the kernel runs
                run().sum().backward()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(300.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while not done.is_set():
            ticks[0] += 1
            time.sleep(5e-4)  # gives the GIL up, so that the worker can take it back
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    kernels = [name for name in dir(extension) if name.endswith(("_forward", "_backward"))]
    assert sorted(ticks_during) == sorted(kernels), "every kernel runs once at least"
    held = [name for name in kernels if ticks_during[name] == 0]
    assert not held, f"these kernels keep the GIL while they run: {held}"
