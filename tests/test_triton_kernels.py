"""The Triton kernels against the reference: on CPU through the Triton interpreter (TRITON_INTERPRET=1,
set by conftest), on a GPU compiled. Forward and every gradient; fp32 and fp16 (bf16 on GPU only: the
interpreter's bf16 dot products are wrong). Plus the sm_80 / sm_90 compile check of every shipped
configuration."""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hrvit_kernels as hk
from parity_cases import CSWIN_CASES, atm, check_atm_gradients_of_one_output, cswin
from hrvit_kernels.testing import (assert_close_fp32, assert_compiled_matches_eager, assert_low_precision_close,
                                  forward_backward, non_contiguous, randn)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
ROOT = Path(__file__).resolve().parents[1]


def _compare(fn_kernel, fn_reference, inputs, dtype, what):
    """fp32: fixed tolerance. fp16/bf16: error against fp64 <= 2 x the reference's own error + floor."""
    outs, grads, g = forward_backward(fn_kernel, inputs)
    if dtype == torch.float32:
        expected, expected_grads, _ = forward_backward(fn_reference, inputs, g)
        for i, (a, e) in enumerate(zip(outs + grads, expected + expected_grads)):
            assert_close_fp32(a, e, f"{what} tensor {i}")
        return
    same, same_grads, _ = forward_backward(fn_reference, inputs, g)
    wide = tuple(t.detach().double().requires_grad_(t.requires_grad) for t in inputs)
    exact, exact_grads, _ = forward_backward(fn_reference, wide, tuple(x.double() for x in g))
    for i, (a, s, e) in enumerate(zip(outs + grads, same + same_grads, exact + exact_grads)):
        assert a.dtype == dtype
        assert_low_precision_close(a, s, e, f"{what} tensor {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,H,W,C,sw,hd", CSWIN_CASES)
@pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])
def test_cswin_attention_triton_matches_reference(B, H, W, C, sw, hd, alias, dtype):
    inputs = tuple(randn(B, H * W, C, dtype=dtype, device=DEVICE, requires_grad=True)
                   for _ in range(2 if alias else 3))
    _compare(cswin("triton", H, W, sw, hd, alias), cswin("reference", H, W, sw, hd, alias), inputs, dtype,
             "cswin_attention")


def test_cswin_attention_triton_strided_inputs():
    """q and v as halves of one projection output; a separate k inside a NaN-filled wider buffer."""
    B, H, W, C = 1, 6, 7, 64
    qv = randn(B, H * W, 2 * C, device=DEVICE, requires_grad=True)
    q, v = qv.chunk(2, dim=-1)
    k = non_contiguous(randn(B, H * W, C, device=DEVICE, requires_grad=True))
    _compare(cswin("triton", H, W, 3, 32, False), cswin("reference", H, W, 3, 32, False), (q, k, v),
             torch.float32, "strided")


def test_cswin_attention_triton_opcheck():
    B, H, W, C = 1, 4, 5, 32
    q, k, v = (randn(B, H * W, C, device=DEVICE, requires_grad=True) for _ in range(3))
    for args in ((q, k, v), (q, v, None)):
        torch.library.opcheck(torch.ops.hrvit.cswin_attention_triton.default, args + (H, W, 2, 1, 16, 0.25))


def test_cswin_attention_triton_compiles_fullgraph():
    B, H, W, C = 1, 5, 4, 32
    inputs = tuple(randn(B, H * W, C, device=DEVICE, requires_grad=True) for _ in range(2))
    assert_compiled_matches_eager(cswin("triton", H, W, 2, 16, True), inputs)


def test_auto_uses_triton_only_on_cuda():
    from hrvit_kernels.ops import _dispatch
    from hrvit_kernels.ops.cswin_attention.api import AVAILABLE

    x = randn(1, 4, 4, device=DEVICE)
    expected = "triton" if DEVICE == "cuda" else ("cpp" if hk.HAS_EXT else "reference")
    assert _dispatch.choose_backend("cswin_attention", "auto", (x,), AVAILABLE) == expected


@pytest.mark.slow
def test_every_shipped_configuration_compiles_for_sm80_and_sm90(tmp_path):
    """python/compile_report.py: Triton's GPU compiler enforces tl.dot shapes and shared-memory limits."""
    report = tmp_path / "report.json"
    res = subprocess.run([sys.executable, str(ROOT / "python" / "compile_report.py"), "--json", str(report)],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    import json

    rows = json.loads(report.read_text())
    assert rows and all(r["ok"] for r in rows)
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90"}
    assert all(r["registers"] and r["registers"] <= 255 for r in rows)


# ---------------------------------------------------------------- MixCFN convolution

# (B, H, W, R): odd sizes, a channel block straddling the split (R/2 not a multiple of the block),
# R = 2, batch 1.
MIX_CASES = [(2, 5, 7, 8), (1, 9, 4, 22), (1, 3, 3, 2), (2, 6, 6, 36)]


def _mix(backend, H, W):
    return lambda x, *p: hk.mix_conv_gelu(x, (H, W), *p, backend=backend)


def _mix_inputs(B, H, W, R, dtype):
    split = R // 2
    shapes = [(B, H * W, R), (split, 1, 3, 3), (split,), (R - split, 1, 5, 5), (R - split,)]
    return tuple(randn(*s, dtype=dtype, device=DEVICE, requires_grad=True) for s in shapes)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,H,W,R", MIX_CASES)
def test_mix_conv_gelu_triton_matches_reference(B, H, W, R, dtype):
    _compare(_mix("triton", H, W), _mix("reference", H, W), _mix_inputs(B, H, W, R, dtype), dtype, "mix_conv_gelu")


def test_mix_conv_gelu_triton_strided_input_and_deterministic_weight_grads():
    B, H, W, R = 1, 4, 5, 12
    x, *params = _mix_inputs(B, H, W, R, torch.float32)
    x = non_contiguous(x)
    _compare(_mix("triton", H, W), _mix("reference", H, W), (x, *params), torch.float32, "strided")
    _, grads1, g = forward_backward(_mix("triton", H, W), (x, *params))
    _, grads2, _ = forward_backward(_mix("triton", H, W), (x, *params), g)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


def test_mix_conv_gelu_triton_opcheck():
    x, w3, b3, w5, b5 = _mix_inputs(1, 3, 4, 6, torch.float32)
    torch.library.opcheck(torch.ops.hrvit.mix_conv_gelu_triton.default, (x, 3, 4, w3, b3, w5, b5))


# ---------------------------------------------------------------- attention-to-mask

ATM_CASES = [(2, 5, 7, 32, 2), (1, 33, 50, 48, 3), (1, 17, 40, 64, 2), (2, 1, 1, 16, 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,Q,L,C,heads", ATM_CASES)
def test_attention_to_mask_triton_matches_reference(B, Q, L, C, heads, dtype):
    inputs = (randn(B, Q, C, dtype=dtype, device=DEVICE, requires_grad=True),
              randn(B, L, C, dtype=dtype, device=DEVICE, requires_grad=True),
              randn(B, L, C, dtype=dtype, device=DEVICE, requires_grad=True))
    _compare(atm("triton", heads), atm("reference", heads), inputs, dtype, "attention_to_mask")


@pytest.mark.parametrize("used", [0, 1], ids=["out_only", "mask_only"])
def test_attention_to_mask_triton_gradients_of_one_output(used):
    check_atm_gradients_of_one_output("triton", used, DEVICE)


def test_attention_to_mask_triton_strided_inputs_and_opcheck():
    q, k, v = (non_contiguous(randn(2, n, 32, device=DEVICE, requires_grad=True)) for n in (6, 11, 11))
    _compare(atm("triton", 4), atm("reference", 4), (q, k, v), torch.float32, "strided")
    torch.library.opcheck(torch.ops.hrvit.attention_to_mask_triton.default, (q, k, v, 4, 0.25))


def test_saved_log_sum_exp_is_base_2_on_both_backends():
    """The forward ops' third output (attention-to-mask) / second (stripe attention) is log2(sum exp(logits))
    per query and head, the same on Triton and C++: one convention, no conversion on load."""
    B, Q, L, C, heads = 2, 9, 13, 48, 3
    q, k, v = (randn(B, n, C, device=DEVICE) for n in (Q, L, L))
    scale = (C // heads) ** -0.5
    _, _, lse = torch.ops.hrvit.attention_to_mask_triton(q, k, v, heads, scale)
    logits = torch.einsum("bqhd,bkhd->bhqk", q.unflatten(-1, (heads, -1)), k.unflatten(-1, (heads, -1))) * scale
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1) / math.log(2), atol=1e-5, rtol=1e-5)
    if hk.HAS_EXT and DEVICE == "cpu":
        torch.testing.assert_close(torch.ops.hrvit.attention_to_mask_cpp(q, k, v, heads, scale)[2], lse,
                                   atol=1e-5, rtol=1e-5)
        x, y = randn(1, 5 * 7, 64), randn(1, 5 * 7, 64)
        stripe = [getattr(torch.ops.hrvit, f"cswin_attention_{b}")(x, y, None, 5, 7, 2, 1, 32, 32 ** -0.5)[1]
                  for b in ("triton", "cpp")]
        torch.testing.assert_close(stripe[0], stripe[1], atol=1e-5, rtol=1e-5)
