"""Backend-wide properties of the kernels: the C++ build (no torch headers, OpenMP), the kernels release
the GIL, the ops compile with dynamic shapes, "auto" picks Triton only on CUDA, one log-sum-exp convention
across backends, and every shipped Triton configuration compiles for sm_80 / sm_90."""
import json
import math
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_close_fp32, forward_backward, randn
from op_cases import CUDA, HAS_TRITON, atm, mix, mix_inputs, resize

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if CUDA else "cpu"
needs_ext = pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built (pip install -e .)")
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def test_csrc_includes_no_torch_headers():
    sources = list((ROOT / "csrc").rglob("*.cpp")) + list((ROOT / "csrc").rglob("*.h"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"#include\s*[<\"](torch|ATen|c10)/", text), path


@needs_ext
def test_extension_is_built_with_openmp():
    from hrvit_kernels import _C

    assert _C.has_openmp


def _dynamic_cases():
    """(op, [(fn, inputs) at two sizes]): sizes, and the head counts derived from them, are symbolic in
    a dynamic graph, in the public functions and in the ops' own argument checks alike."""
    def cswin_at(H, W, C):
        inputs = (randn(1, H * W, C, requires_grad=True), randn(1, H * W, C, requires_grad=True))
        return (lambda q, v: hk.cswin_attention(q, v, v, (H, W), 2, 16, backend="cpp")), inputs

    def mix_at(H, W, R):
        return mix("cpp", H, W), mix_inputs(1, H, W, R)

    def atm_at(Q, L, C):
        return atm("cpp", C // 16), tuple(randn(1, n, C, requires_grad=True) for n in (Q, L, L))

    def resize_at(h, w):
        return resize("cpp", (2 * h + 1, w + 3)), [randn(1, 3, h, w, requires_grad=True)]

    return [("cswin_attention", [cswin_at(4, 6, 64), cswin_at(6, 5, 96)]),
            ("mix_conv_gelu", [mix_at(4, 6, 8), mix_at(5, 3, 12)]),
            ("attention_to_mask", [atm_at(5, 9, 32), atm_at(7, 11, 64)]),
            ("resize_sum", [resize_at(4, 5), resize_at(6, 3)])]


@needs_ext
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


@needs_ext
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
    x, *mix_params = mix_inputs(2, 128, 128, 128)
    q, v = randn(2, 128 * 128, 64, requires_grad=True), randn(2, 128 * 128, 64, requires_grad=True)
    atm_inputs = tuple(randn(2, n, 512, requires_grad=True) for n in (150, 1600, 1600))
    logits = randn(1, 32, 128, 128, requires_grad=True)
    bias, table, window_tokens = (randn(2, 49, 49, requires_grad=True), randn(2, 255 * 255, requires_grad=True),
                                  randn(2, 361, 64, requires_grad=True))
    image = randn(1, 64, 128, 128, requires_grad=True)
    per_channel = lambda n: [randn(n, requires_grad=True) for _ in range(3)]  # noqa: E731  bias, scale, shift
    mlp_params = [randn(256, 64, requires_grad=True), *per_channel(256), randn(256, 1, 3, 3, requires_grad=True),
                  *per_channel(256), randn(64, 256, requires_grad=True), randn(64, requires_grad=True)]
    # A larger map: the residual pass is one of the fastest kernels, and must last long enough to see a tick.
    smoothing_image = randn(1, 128, 192, 192, requires_grad=True)
    smoothing_params = [randn(32, 128, requires_grad=True), *per_channel(32), randn(32, 32, 3, 3, requires_grad=True),
                        *per_channel(32), randn(128, 32, requires_grad=True), *per_channel(128)]
    # Wide enough for Winograd's transforms, the filters' included, to last a millisecond or more.
    conv_image, conv_weight = randn(1, 512, 64, 64, requires_grad=True), randn(512, 512, 3, 3, requires_grad=True)
    # LayerNorm streams its rows once: 16 M elements last a few milliseconds.
    rows, residual = randn(4, 256 * 256, 64, requires_grad=True), randn(4, 256 * 256, 64, requires_grad=True)
    runs = [lambda: hk.mix_conv_gelu(x, (128, 128), *mix_params, backend="cpp"),
            lambda: hk.hlg_local_attention(q, v, (128, 128), True, bias, backend="cpp"),
            lambda: hk.hlg_global_attention(q, window_tokens, window_tokens, (128, 128), table, backend="cpp"),
            lambda: hk.cswin_attention(q, v, v, (128, 128), 1, 32, backend="cpp"),
            lambda: hk.attention_to_mask(*atm_inputs, 16, backend="cpp")[0],
            lambda: hk.resize_sum([logits], (512, 512), backend="cpp"),
            lambda: hk.depthwise_mlp(image, *mlp_params, stride=2, backend="cpp"),
            lambda: hk.spatial_smoothing(smoothing_image, *smoothing_params, backend="cpp"),
            lambda: hk.conv_affine_act(conv_image, conv_weight, *per_channel(512), padding=1, activation="relu",
                                       backend="cpp"),
            lambda: hk.add_layer_norm(rows, residual, *per_channel(64)[:2], backend="cpp")[1]]
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
    kernels = [name for name in dir(extension) if name.endswith(("_forward", "_backward", "_inplace", "_transform"))]
    assert sorted(ticks_during) == sorted(kernels), "every kernel runs once at least"
    held = [name for name in kernels if ticks_during[name] == 0]
    assert not held, f"these kernels keep the GIL while they run: {held}"


@needs_triton
def test_auto_uses_triton_only_on_cuda():
    from hrvit_kernels.ops import _dispatch
    from hrvit_kernels.ops.cswin_attention.api import AVAILABLE

    x = randn(1, 4, 4, device=DEVICE)
    expected = "triton" if DEVICE == "cuda" else ("cpp" if hk.HAS_EXT else "reference")
    assert _dispatch.choose_backend("cswin_attention", "auto", (x,), AVAILABLE) == expected


@needs_triton
@pytest.mark.slow
def test_every_shipped_configuration_compiles_for_sm80_and_sm90(tmp_path):
    """python/compile_report.py: Triton's GPU compiler enforces tl.dot shapes and shared-memory limits."""
    report = tmp_path / "report.json"
    res = subprocess.run([sys.executable, str(ROOT / "python" / "compile_report.py"), "--json", str(report)],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = json.loads(report.read_text())
    assert rows and all(r["ok"] for r in rows)
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90"}
    assert all(r["registers"] and r["registers"] <= 255 for r in rows)


@needs_triton
def test_saved_log_sum_exp_is_base_2_on_both_backends():
    """The forward ops' third output (attention-to-mask) / second (stripe attention) is log2(sum exp(logits))
    per query and head, the same on Triton and C++: one convention, no conversion on load."""
    B, Q, L, C, heads = 2, 9, 13, 48, 3
    q, k, v = (randn(B, n, C, device=DEVICE) for n in (Q, L, L))
    scale = (C // heads) ** -0.5
    _, _, lse = torch.ops.hrvit.attention_to_mask_triton(q, k, v, heads, scale)
    logits = torch.einsum("bqhd,bkhd->bhqk", q.unflatten(-1, (heads, -1)), k.unflatten(-1, (heads, -1))) * scale
    assert_close_fp32(lse, torch.logsumexp(logits, -1) / math.log(2), "Triton lse")
    if hk.HAS_EXT and DEVICE == "cpu":
        assert_close_fp32(torch.ops.hrvit.attention_to_mask_cpp(q, k, v, heads, scale)[2], lse, "C++ lse")
        x, y = randn(1, 5 * 7, 64), randn(1, 5 * 7, 64)
        stripe = [getattr(torch.ops.hrvit, f"cswin_attention_{b}")(x, y, None, 5, 7, 2, 1, 32, 32 ** -0.5)[1]
                  for b in ("triton", "cpp")]
        assert_close_fp32(stripe[0], stripe[1], "stripe lse")
