"""Backend choice: explicit argument, use_backend(), HRVIT_KERNELS_BACKEND, and a missing extension."""
import subprocess
import sys

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.ops import _dispatch
from hrvit_kernels.ops.mixcfn.api import AVAILABLE as MIX_AVAILABLE
from hrvit_kernels.testing import randn

X = (randn(1, 4, 4),)


def test_auto_prefers_cpp_on_cpu_when_built():
    expected = "cpp" if hk.HAS_EXT else "reference"
    assert _dispatch.choose_backend("mix_conv_gelu", "auto", X, MIX_AVAILABLE) == expected


def test_auto_falls_back_to_reference_for_float64():
    assert _dispatch.choose_backend("mix_conv_gelu", "auto", (X[0].double(),), MIX_AVAILABLE) == "reference"


def test_use_backend_context_nests_and_restores():
    with hk.use_backend("reference"):
        assert _dispatch.choose_backend("mix_conv_gelu", "auto", X, MIX_AVAILABLE) == "reference"
        with hk.use_backend("auto"):
            assert _dispatch.default_backend() == "auto"
        assert _dispatch.default_backend() == "reference"
    assert _dispatch.default_backend() == "auto"


def test_explicit_argument_beats_context():
    with hk.use_backend("cpp"):
        assert _dispatch.choose_backend("mix_conv_gelu", "reference", X, MIX_AVAILABLE) == "reference"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "reference")
    assert _dispatch.choose_backend("mix_conv_gelu", "auto", X, MIX_AVAILABLE) == "reference"
    monkeypatch.setenv(_dispatch.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=r"environment variable HRVIT_KERNELS_BACKEND: unknown backend 'fastest'"):
        _dispatch.choose_backend("mix_conv_gelu", "auto", X, MIX_AVAILABLE)


def test_use_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"use_backend: unknown backend 'gpu'"):
        with hk.use_backend("gpu"):
            pass


def test_requested_backend_that_cannot_run_raises():
    with pytest.raises(RuntimeError, match=r"mix_conv_gelu: backend 'cpp' cannot run this call: dtype torch.float64"):
        _dispatch.choose_backend("mix_conv_gelu", "cpp", (X[0].double(),), MIX_AVAILABLE)


MISSING_EXT = r"""
import sys, builtins
real_import = builtins.__import__
def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "hrvit_kernels" and fromlist and "_C" in fromlist:
        raise ImportError("simulated: extension not built")
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = fake_import
import torch, hrvit_kernels as hk
assert not hk.HAS_EXT
x = torch.randn(1, 12, 4); w3, b3, w5, b5 = torch.randn(2, 1, 3, 3), torch.randn(2), torch.randn(2, 1, 5, 5), torch.randn(2)
hk.mix_conv_gelu(x, (3, 4), w3, b3, w5, b5)  # auto falls back to the reference
try:
    hk.mix_conv_gelu(x, (3, 4), w3, b3, w5, b5, backend="cpp")
except RuntimeError as e:
    assert "pip install -e ." in str(e) and "simulated" in str(e), e
    print("OK")
"""


def test_missing_extension_keeps_import_working_and_explains_rebuild():
    out = subprocess.run([sys.executable, "-c", MISSING_EXT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr


def test_auto_prefers_the_cpp_kernels_on_cpu():
    from hrvit_kernels.ops.attention_to_mask import api

    x = randn(1, 4, 8)
    expected = "cpp" if hk.HAS_EXT else "reference"
    assert _dispatch.choose_backend(api.OP, "auto", (x,), api.AVAILABLE) == expected


def test_a_default_backend_an_op_does_not_offer_falls_back_to_auto():
    maps = [randn(1, 2, 3, 3)]
    expected = hk.resize_sum(maps, (5, 4), backend="reference")
    with hk.use_backend("triton"):  # resize_sum has no Triton kernel
        torch.testing.assert_close(hk.resize_sum(maps, (5, 4)), expected)
        with pytest.raises(NotImplementedError, match=r"resize_sum: backend 'triton' is not implemented"):
            hk.resize_sum(maps, (5, 4), backend="triton")
