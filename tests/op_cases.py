"""What the per-op test files share: the kernel backends (skipped where unavailable), the devices and dtypes
each runs, the Triton interpreter's subset of a case list, call wrappers and the comparison with the
reference (hrvit_kernels.testing's tolerances)."""
import importlib.util

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import (assert_as_accurate_as_reference, assert_close_fp32, assert_low_precision_close,
                                  forward_backward, randn)

CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None
# The Triton kernels run compiled on a GPU, else in the interpreter (conftest sets TRITON_INTERPRET=1).
INTERPRETED = not CUDA

KERNEL_BACKENDS = [
    pytest.param("cpp", marks=pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")),
    pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")),
]


def device_of(backend: str) -> str:
    return "cuda" if backend == "triton" and CUDA else "cpu"


def dtypes_of(backend: str) -> list:
    """fp32 and the low-precision dtypes a backend takes: C++ converts fp16/bf16 at its boundary; the
    interpreter's bf16 dot products are wrong, so Triton runs bf16 on a GPU only."""
    if backend == "triton" and INTERPRETED:
        return [torch.float32, torch.float16]
    return [torch.float32, torch.float16, torch.bfloat16]


def with_dtypes(test_backends=KERNEL_BACKENDS):
    """(backend, dtype) parameters: every backend with each dtype it takes."""
    return [pytest.param(p.values[0], dtype, marks=p.marks, id=f"{p.values[0]}-{str(dtype)[6:]}")
            for p in test_backends for dtype in dtypes_of(p.values[0])]


def cases(all_cases, interpreter_subset):
    """The case list, the Triton interpreter's subset marked ``interpreter``."""
    return [pytest.param(*case, marks=pytest.mark.interpreter) if case in interpreter_subset else case
            for case in all_cases]


def skip_outside_the_interpreter_subset(request, backend: str) -> None:
    """The interpreter is slow: on CPU, Triton runs the cases marked ``interpreter`` only."""
    if backend == "triton" and INTERPRETED and request.node.get_closest_marker("interpreter") is None:
        pytest.skip("outside the Triton interpreter's subset (a GPU runs every case)")


def compare_with_reference(fn, reference, inputs, dtype, what, summed=()):
    """Outputs and every gradient of fn against the reference: fp32 at the fixed tolerance (``summed``:
    the indices of results summed over all tokens, at FP32_SUMMED_TOL); fp16 / bf16 by the rule
    "error against fp64 <= 2 x the reference's own error in that dtype + floor"."""
    outs, grads, g = forward_backward(fn, inputs)
    results = outs + grads
    if dtype == torch.float32:
        expected, expected_grads, _ = forward_backward(reference, inputs, g)
        for i, (a, e) in enumerate(zip(results, expected + expected_grads)):
            assert_close_fp32(a, e, f"{what} result {i}", summed=i in summed)
        return
    same, same_grads, _ = forward_backward(reference, inputs, g)
    wide = tuple(t.detach().double().requires_grad_(t.requires_grad) for t in inputs)
    exact, exact_grads, _ = forward_backward(reference, wide, tuple(x.double() for x in g))
    for i, (a, s, e) in enumerate(zip(results, same + same_grads, exact + exact_grads)):
        assert a.dtype == dtype, f"{what} result {i}: dtype {a.dtype}"
        assert_low_precision_close(a, s, e, f"{what} result {i}")


def compare_sharp_logits(make, backend, inputs):
    """make(impl) -> the op on backend ``impl``: its results in float32 on ``backend`` are as close to
    float64 as the float32 reference's (factor 4: sums over thousands of keys in another order)."""
    results = {}
    for name, impl, dtype in [("exact", "reference", torch.float64), ("reference", "reference", torch.float32),
                              ("kernel", backend, torch.float32)]:
        cast = tuple(t.detach().to(dtype).requires_grad_() for t in inputs)
        outs, grads, _ = forward_backward(make(impl), cast, seed=1)
        results[name] = [t.double() for t in outs + grads]
    for i, (a, r, e) in enumerate(zip(results["kernel"], results["reference"], results["exact"])):
        assert torch.isfinite(a).all(), f"result {i}: not finite"
        assert_as_accurate_as_reference(a, r, e, f"result {i}", 4.0, 1e-6 * e.abs().max().item())


def cswin(backend, H, W, stripe_width, head_dim, alias):
    """cswin_attention on (q, k) when k is v (alias), else on (q, k, v)."""
    def call(q, k, *rest):
        return hk.cswin_attention(q, k, k if alias else rest[0], (H, W), stripe_width, head_dim, backend=backend)
    return call


def mix(backend, H, W):
    return lambda x, *params: hk.mix_conv_gelu(x, (H, W), *params, backend=backend)


def mix_inputs(B, H, W, R, dtype=torch.float32, device="cpu", requires_grad=True):
    split = R // 2
    shapes = [(B, H * W, R), (split, 1, 3, 3), (split,), (R - split, 1, 5, 5), (R - split,)]
    return tuple(randn(*s, dtype=dtype, device=device, requires_grad=requires_grad) for s in shapes)


def atm(backend, heads):
    """attention_to_mask on (q, k, v) with ``heads`` heads."""
    return lambda q, k, v: hk.attention_to_mask(q, k, v, heads, backend=backend)


def resize(backend, size):
    return lambda *maps: hk.resize_sum(list(maps), size, backend=backend)


def hlg_local(backend, H, W, dilated):
    """hlg_local_attention on (q, v, bias)."""
    return lambda q, v, bias: hk.hlg_local_attention(q, v, (H, W), dilated, bias, backend=backend)


def hlg_global(backend, H, W):
    """hlg_global_attention on (q, k, v, bias_table)."""
    return lambda q, k, v, table: hk.hlg_global_attention(q, k, v, (H, W), table, backend=backend)
