"""The model-level switch between the release's sequence of ops and the package's rewrites: read once when a
module is built (environment variable, set_release_ops), changed on a built model by release_ops(model), and
independent of the kernel backend."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.modules.release_ops import ENV_VAR
from hrvit_kernels.testing import MODEL_TOL, assert_close_within, randn


@pytest.fixture(autouse=True)
def _process_default_restored():
    yield
    hk.set_release_ops(None)


def _switches(model):
    return {name: m.release_ops for name, m in model.named_modules() if hasattr(m, "release_ops")}


def test_modules_read_the_environment_when_built(monkeypatch):
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv(ENV_VAR, value)
        switches = _switches(hk.create_model("hrvit_b1_segformer"))
        assert switches and set(switches.values()) == {expected}, value
    monkeypatch.delenv(ENV_VAR)
    assert set(_switches(hk.create_model("hrvit_b1")).values()) == {False}
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ValueError, match=rf"environment variable {ENV_VAR}: got 'maybe'; accepted: 1 or 0"):
        hk.create_model("hrvit_b1")


def test_set_release_ops_overrides_the_environment_for_later_modules(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    built_before = hk.create_model("hrvit_b1")
    hk.set_release_ops(True)
    assert hk.use_release_ops() and set(_switches(hk.create_model("hrvit_b1")).values()) == {True}
    assert set(_switches(built_before).values()) == {False}  # read once, when built
    hk.set_release_ops(None)
    assert not hk.use_release_ops()
    with pytest.raises(TypeError, match="set_release_ops: argument 'enable' must be a bool or None, got 1"):
        hk.set_release_ops(1)


def test_release_ops_context_sets_every_switch_and_restores_them():
    model = hk.create_model("hrvit_b1_segformer")
    model.decode_head.release_ops = True  # a mixed model comes back mixed
    before = _switches(model)
    with hk.release_ops(model) as same:
        assert same is model and set(_switches(model).values()) == {True}
    assert _switches(model) == before
    with hk.release_ops(model, False):
        assert set(_switches(model).values()) == {False}
    assert _switches(model) == before
    with pytest.raises(TypeError, match="release_ops: argument 'enable' must be a bool"):
        with hk.release_ops(model, "yes"):
            pass


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_the_kernel_backend_does_not_choose_the_sequence(backend):
    """Rewrites skip the SegFormer head's fusion conv and run its levels through resize_sum; the release's
    sequence runs the conv; on either kernel backend."""
    model = hk.create_model("hrvit_b1_segformer", num_classes=5).eval()
    calls = []
    model.decode_head.fusion_conv.conv.register_forward_hook(lambda *_: calls.append("fusion conv"))
    x = randn(1, 3, 64, 64)
    with torch.no_grad(), hk.use_backend(backend):
        rewritten = model(x)
        assert calls == []
        with hk.release_ops(model):
            release = model(x)
        assert calls == ["fusion conv"]
    assert_close_within(rewritten, release, MODEL_TOL, "rewrites")


@pytest.mark.parametrize("batch", [1, 3])
def test_pointwise_conv_cpu_form_equals_the_convolution(batch):
    x = randn(batch, 8, 5, 7).requires_grad_()
    weight, bias = randn(4, 8, 1, 1).requires_grad_(), randn(4).requires_grad_()
    grad = randn(batch, 4, 5, 7)
    results = []
    for backend in ("reference", "auto"):
        out = hk.ops.pointwise_conv(x, weight, bias, backend=backend)
        results.append((out, torch.autograd.grad(out, [x, weight, bias], grad)))
    (expected, expected_grads), (actual, actual_grads) = results
    torch.testing.assert_close(actual, expected)
    for a, e in zip(actual_grads, expected_grads):
        torch.testing.assert_close(a, e)


def test_composite_ops_check_their_arguments():
    x = randn(2, 8, 3, 3)
    with pytest.raises(ValueError, match=r"pointwise_conv: argument 'weight' must hold \(out_channels, 8\)"):
        hk.ops.pointwise_conv(x, randn(4, 6), randn(4))
    with pytest.raises(ValueError, match=r"pointwise_conv: argument 'bias' must have shape \(4,\)"):
        hk.ops.pointwise_conv(x, randn(4, 8), randn(5))
    with pytest.raises(ValueError, match="pointwise_conv: argument 'backend': unknown backend 'gpu'"):
        hk.ops.pointwise_conv(x, randn(4, 8), randn(4), backend="gpu")
    tokens = randn(2, 5, 32)
    with pytest.raises(ValueError, match=r"kronecker_mlp: argument 'x' must have k \* p = 24 channels"):
        hk.ops.kronecker_mlp(tokens, 4, 6, randn(6, 6), randn(6), randn(4, 4), randn(4))
    with pytest.raises(ValueError, match=r"kronecker_mlp: argument 'left_bias' must have shape \(4,\)"):
        hk.ops.kronecker_mlp(tokens, 4, 8, randn(8, 8), randn(8), randn(4, 4), randn(3))
