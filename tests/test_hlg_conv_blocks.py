"""HLG's inference ops (depthwise_mlp, spatial_smoothing, conv_affine_act, depthwise_conv3x3, gelu_mlp) on the
C++ backend against the reference: forward and every gradient, fp32 / fp16 / bf16, strides 1 and 2 at odd sizes, channel counts that
leave vector remainders, NCHW and channels-last inputs, bad input, opcheck and torch.compile; and HLG's modules
against their BatchNorm sequences in eval and training mode."""
import pytest
import torch
import torch.nn.functional as F

import hrvit_kernels as hk
from hrvit_kernels.models.hlg import HLGClassifier, _DepthwiseMLP, _DownProj
from hrvit_kernels.modules.hlg import ConvBNGELU, SpatialSmoothing
from hrvit_kernels.testing import assert_compiled_matches_eager, non_contiguous, randn, with_batchnorm_statistics
from op_cases import compare_with_reference, with_dtypes

CPP = [pytest.param("cpp", marks=pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built"))]

# (B, C, H, W, hidden, out_channels, stride): odd and even sizes, maps narrower than the kernel's pixel block
# (12 with AVX-512, else 4), hidden widths with 16-, 8-, 4-lane and scalar remainders, 1 x 1 and 1-row maps.
CASES = [
    (1, 3, 7, 9, 20, 5, 1),
    (2, 4, 9, 13, 44, 7, 2),
    (1, 8, 12, 11, 64, 16, 2),
    (1, 5, 1, 1, 37, 3, 2),
    (2, 6, 1, 10, 19, 6, 1),
    (1, 16, 17, 6, 96, 32, 1),
    (1, 20, 3, 30, 24, 8, 1),  # rows wide enough for whole 12-pixel blocks of the C++ depthwise conv
    (1, 20, 3, 53, 24, 8, 2),
]


def _parameters(C, hidden, out_channels, dtype=torch.float32):
    """weight1, bias1, scale1, shift1, weight_dw, bias_dw, scale2, shift2, weight2, bias2: random, scales
    positive like an eval BatchNorm's."""
    scale = lambda: (torch.rand(hidden) + 0.5).to(dtype).requires_grad_()  # noqa: E731
    return [randn(hidden, C, dtype=dtype, requires_grad=True, scale=C ** -0.5), randn(hidden, dtype=dtype,
            requires_grad=True), scale(), randn(hidden, dtype=dtype, requires_grad=True),
            randn(hidden, 1, 3, 3, dtype=dtype, requires_grad=True, scale=1 / 3), randn(hidden, dtype=dtype,
            requires_grad=True), scale(), randn(hidden, dtype=dtype, requires_grad=True),
            randn(out_channels, hidden, dtype=dtype, requires_grad=True, scale=hidden ** -0.5),
            randn(out_channels, dtype=dtype, requires_grad=True)]


def _mlp(backend, stride):
    return lambda x, *parameters: hk.depthwise_mlp(x, *parameters, stride=stride, backend=backend)


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("B,C,H,W,hidden,out_channels,stride", CASES)
def test_kernel_matches_reference(backend, dtype, B, C, H, W, hidden, out_channels, stride):
    inputs = [randn(B, C, H, W, dtype=dtype, requires_grad=True), *_parameters(C, hidden, out_channels, dtype)]
    compare_with_reference(_mlp(backend, stride), _mlp("reference", stride), inputs, dtype, backend)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_input_layouts(backend, layout):
    x = randn(2, 12, 9, 10)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else non_contiguous(x)
    inputs = [x.requires_grad_(), *_parameters(12, 40, 8)]
    compare_with_reference(_mlp(backend, 2), _mlp("reference", 2), inputs, torch.float32, layout)


@pytest.mark.parametrize("backend", CPP)
def test_output_is_tokens_and_never_a_callers_tensor(backend):
    x = randn(1, 4, 5, 6)
    before = x.clone()
    out = hk.depthwise_mlp(x, *_parameters(4, 16, 4), backend=backend)
    assert out.is_contiguous(memory_format=torch.channels_last)  # flattening to tokens is a view
    out.detach().add_(1)
    assert torch.equal(x, before)


@pytest.mark.parametrize("backend", CPP)
def test_autocast_runs_in_the_autocast_dtype(backend):
    x = randn(1, 8, 7, 7)
    parameters = [p.detach() for p in _parameters(8, 32, 8)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hk.depthwise_mlp(x, *parameters, stride=2, backend=backend)
        expected = hk.depthwise_mlp(x, *parameters, stride=2, backend="reference")
    assert out.dtype == expected.dtype == torch.bfloat16
    exact = hk.depthwise_mlp(x.double(), *[p.double() for p in parameters], stride=2, backend="reference")
    assert (out.double() - exact).abs().max() <= 2 * (expected.double() - exact).abs().max() + 1e-2


@pytest.mark.parametrize("backend", ["reference", *CPP])
@pytest.mark.parametrize("argument,value,message", [
    ("x", lambda: randn(1, 4, 5), "'x'"),
    ("weight1", lambda: randn(16, 5), "'weight1'"),
    ("weight_dw", lambda: randn(16, 1, 5, 5), "'weight_dw'"),
    ("weight2", lambda: randn(4, 15), "'weight2'"),
    ("shift1", lambda: randn(15), "'shift1'"),
    ("bias2", lambda: randn(5), "'bias2'"),
    ("stride", lambda: 3, "'stride' must be 1 or 2, got 3"),
    ("bias_dw", lambda: randn(16, dtype=torch.float64), "dtype"),
])
def test_bad_input_is_named(backend, argument, value, message):
    names = ["x", "weight1", "bias1", "scale1", "shift1", "weight_dw", "bias_dw", "scale2", "shift2", "weight2",
             "bias2", "stride"]
    arguments = dict(zip(names, [randn(1, 4, 5, 5), *[p.detach() for p in _parameters(4, 16, 4)], 1]))
    arguments[argument] = value()
    with pytest.raises((ValueError, TypeError), match=message):  # TypeError for a wrong dtype
        hk.depthwise_mlp(**arguments, backend=backend)


@pytest.mark.parametrize("backend", CPP)
def test_opcheck_and_fullgraph_compile(backend):
    inputs = [randn(1, 4, 5, 6, requires_grad=True), *_parameters(4, 12, 4)]
    torch.library.opcheck(torch.ops.hrvit.depthwise_mlp_cpp.default, (*inputs, 2))
    assert_compiled_matches_eager(_mlp(backend, 2), inputs)


def _module_with_statistics(in_channels, channels, stride) -> _DepthwiseMLP:
    return with_batchnorm_statistics(_DepthwiseMLP(in_channels, channels, stride))


@pytest.mark.parametrize("backend", ["reference", *CPP])
@pytest.mark.parametrize("stride", [1, 2])
def test_hlg_mlp_in_eval_equals_its_batchnorm_sequence(backend, stride):
    mlp = _module_with_statistics(6, 12, stride).eval()
    x = randn(2, 6, 11, 9)
    expected = mlp.fc3(F.gelu(mlp.norm2(mlp.fc2(F.gelu(mlp.norm1(mlp.fc1(x)))))))
    with hk.use_backend(backend), torch.no_grad():
        torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-5)


def test_hlg_mlp_in_training_uses_batch_statistics():
    mlp = _module_with_statistics(6, 12, 1).train()
    x = randn(2, 6, 5, 5)
    batch_stats = mlp.fc3(F.gelu(F.batch_norm(mlp.fc2(F.gelu(F.batch_norm(
        mlp.fc1(x), None, None, mlp.norm1.weight, mlp.norm1.bias, True))), None, None, mlp.norm2.weight,
        mlp.norm2.bias, True)))
    torch.testing.assert_close(mlp(x), batch_stats, rtol=1e-5, atol=1e-5)


def _affine_parameters(channels, dtype=torch.float32):
    """bias, scale (positive, like an eval BatchNorm's), shift."""
    return [randn(channels, dtype=dtype, requires_grad=True), (torch.rand(channels) + 0.5).to(dtype).requires_grad_(),
            randn(channels, dtype=dtype, requires_grad=True)]


def _smoothing_parameters(C, mid, dtype=torch.float32):
    return [randn(mid, C, dtype=dtype, requires_grad=True, scale=C ** -0.5), *_affine_parameters(mid, dtype),
            randn(mid, mid, 3, 3, dtype=dtype, requires_grad=True, scale=(9 * mid) ** -0.5),
            *_affine_parameters(mid, dtype), randn(C, mid, dtype=dtype, requires_grad=True, scale=mid ** -0.5),
            *_affine_parameters(C, dtype)]


def _smoothing(backend):
    return lambda x, *parameters: hk.spatial_smoothing(x, *parameters, backend=backend)


# (B, C, mid, H, W): HLG's C / 4 bottlenecks and odd widths, 1 x 1 and 1-row maps.
SMOOTHING_CASES = [(1, 8, 2, 7, 9), (2, 20, 5, 6, 11), (1, 96, 24, 13, 13), (1, 12, 3, 1, 1), (2, 4, 1, 1, 6)]


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("B,C,mid,H,W", SMOOTHING_CASES)
def test_smoothing_matches_reference(backend, dtype, B, C, mid, H, W):
    inputs = [randn(B, C, H, W, dtype=dtype, requires_grad=True), *_smoothing_parameters(C, mid, dtype)]
    compare_with_reference(_smoothing(backend), _smoothing("reference"), inputs, dtype, backend)


def _conv(backend, stride, padding, groups, activation="gelu"):
    return lambda x, *parameters: hk.conv_affine_act(x, *parameters, stride=stride, padding=padding,
                                                     groups=groups, activation=activation, backend=backend)


def _conv_inputs(B, C, out_channels, k, H, W, groups, dtype=torch.float32):
    return [randn(B, C, H, W, dtype=dtype, requires_grad=True),
            randn(out_channels, C // groups, k, k, dtype=dtype, requires_grad=True,
                  scale=(C // groups * k * k) ** -0.5),
            *_affine_parameters(out_channels, dtype)]


# (B, C, out_channels, k, H, W, stride, padding, groups): HLG's stem (3 -> C stride 2; C -> C), its grouped
# down-projection (C -> 2C, groups C, stride 2), odd sizes, a 1 x 1 kernel; then 3x3 stride-1 convolutions
# large enough for Winograd (odd sizes, channels with vector remainders, two images).
CONV_CASES = [(1, 3, 16, 3, 15, 17, 2, 1, 1), (2, 8, 8, 3, 9, 7, 1, 1, 1), (1, 6, 12, 3, 11, 10, 2, 1, 6),
              (2, 5, 7, 1, 4, 3, 1, 0, 1)]
WINOGRAD_CASES = [(1, 33, 40, 3, 41, 39, 1, 1, 1), (2, 32, 35, 3, 29, 27, 1, 1, 1)]


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("B,C,out_channels,k,H,W,stride,padding,groups", CONV_CASES + WINOGRAD_CASES)
def test_conv_affine_act_matches_reference(backend, dtype, activation, B, C, out_channels, k, H, W, stride, padding,
                                           groups):
    inputs = _conv_inputs(B, C, out_channels, k, H, W, groups, dtype)
    compare_with_reference(_conv(backend, stride, padding, groups, activation),
                           _conv("reference", stride, padding, groups, activation), inputs, dtype, backend)


@pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")
@pytest.mark.parametrize("chunk_tiles", [1, 40, 512])
@pytest.mark.parametrize("B,C,out_channels,k,H,W,stride,padding,groups", WINOGRAD_CASES)
def test_winograd_chunks_match_the_direct_convolution(monkeypatch, chunk_tiles, B, C, out_channels, k, H, W, stride,
                                                      padding, groups):
    """The Winograd path runs for these sizes, and its result does not depend on how tile rows are chunked
    (one tile row, chunks that span two images, all rows at once), against float64."""
    from hrvit_kernels.ops.hlg_conv_blocks import cpu
    x, weight, bias, scale, shift = (t.detach() for t in _conv_inputs(B, C, out_channels, k, H, W, groups))
    assert cpu.winograd_applies(x, weight, stride, padding, groups)
    monkeypatch.setattr(cpu, "_WINOGRAD_TILES", chunk_tiles)
    expected = F.relu(F.conv2d(x.double(), weight.double(), bias.double(), padding=1) * scale.double()[:, None, None]
                      + shift.double()[:, None, None])
    got = hk.conv_affine_act(x, weight, bias, scale, shift, padding=1, activation="relu", backend="cpp")
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", *CPP])
def test_conv_affine_act_without_bias(backend):
    x, weight = randn(1, 3, 8, 8), randn(5, 3, 3, 3)
    _, scale, shift = (t.detach() for t in _affine_parameters(5))
    expected = F.gelu(F.conv2d(x, weight, padding=1) * scale[:, None, None] + shift[:, None, None])
    torch.testing.assert_close(hk.conv_affine_act(x, weight, None, scale, shift, padding=1, backend=backend),
                               expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", *CPP])
@pytest.mark.parametrize("argument,value,message", [
    ("weight", lambda: randn(6, 4, 3, 3), "'weight' must have shape"),
    ("groups", lambda: 4, "'weight' must have shape"),
    ("stride", lambda: 0, "'stride' must be an int >= 1, got 0"),
    ("padding", lambda: -1, "'padding' must be an int >= 0"),
    ("x", lambda: randn(1, 3, 1, 1), "smaller than the 3x3 kernel"),
    ("shift", lambda: randn(5), "'shift'"),
    ("activation", lambda: "tanh", "'activation' must be one of \\['gelu', 'relu'\\], got 'tanh'"),
])
def test_conv_bad_input_is_named(backend, argument, value, message):
    names = ["x", "weight", "bias", "scale", "shift", "stride", "padding", "groups", "activation"]
    arguments = dict(zip(names, [randn(1, 3, 5, 5), randn(6, 3, 3, 3), *[t.detach() for t in _affine_parameters(6)],
                                 1, 0, 1, "gelu"]))
    arguments[argument] = value()
    with pytest.raises(ValueError, match=message):
        hk.conv_affine_act(**arguments, backend=backend)


@pytest.mark.parametrize("backend", CPP)
def test_smoothing_and_conv_opcheck_and_fullgraph_compile(backend):
    inputs = [randn(1, 8, 5, 6, requires_grad=True), *_smoothing_parameters(8, 2)]
    torch.library.opcheck(torch.ops.hrvit.spatial_smoothing_cpp.default, tuple(inputs))
    assert_compiled_matches_eager(_smoothing(backend), inputs)
    inputs = [randn(1, 4, 7, 6, requires_grad=True), randn(8, 1, 3, 3, requires_grad=True), *_affine_parameters(8)]
    torch.library.opcheck(torch.ops.hrvit.conv_affine_act_cpp.default, (*inputs, 2, 1, 4, "relu"))
    assert_compiled_matches_eager(_conv(backend, 2, 1, 4, "relu"), inputs)


@pytest.mark.parametrize("backend", ["reference", *CPP])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_hlg_conv_modules_equal_their_batchnorm_sequences(backend, mode):
    """The smoothing, stem layer and down-projection: the op in eval mode, the sequence with the batch's
    statistics in training mode, both equal to the release's layers called one by one."""
    smoothing, stem, down = (with_batchnorm_statistics(m).train(mode == "train") for m in
                             (SpatialSmoothing(16), ConvBNGELU(3, 8, 2), _DownProj(8, 16)))
    x = randn(2, 16, 9, 7)
    with hk.use_backend(backend), torch.set_grad_enabled(mode == "train"):
        torch.testing.assert_close(smoothing.residual_gelu(x), F.gelu(x + smoothing[0](x)), rtol=1e-5, atol=1e-5)
        image = randn(2, 3, 11, 10)
        torch.testing.assert_close(stem(image), stem[2](stem[1](stem[0](image))), rtol=1e-5, atol=1e-5)
        maps = randn(2, 8, 9, 7)
        torch.testing.assert_close(down(maps), F.gelu(down.proj(maps)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPP)
def test_ops_serve_inference_only(backend, monkeypatch):
    """In eval mode the modules call the ops when no gradient is recorded, and PyTorch's sequence (whose backward
    reuses its saved activations) when one is, as in training with frozen BatchNorms."""
    import hrvit_kernels.models.hlg as hlg_model
    import hrvit_kernels.modules.batchnorm as batchnorm_modules
    import hrvit_kernels.modules.hlg as hlg_modules
    calls = []
    for module, name in ((hlg_model, "depthwise_mlp"), (hlg_model, "depthwise_conv3x3"),
                         (hlg_modules, "spatial_smoothing"), (batchnorm_modules, "conv_affine_act")):
        op = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _op=op, _name=name, **kwargs: calls.append(_name)
                            or _op(*args, **kwargs))
    model = HLGClassifier(hlg_model.VARIANTS["tiny"]).eval()
    x = randn(1, 3, 32, 32)
    with hk.use_backend(backend):
        with torch.no_grad():
            inferred = model(x)
        assert sorted(set(calls)) == ["conv_affine_act", "depthwise_conv3x3", "depthwise_mlp", "spatial_smoothing"]
        calls.clear()
        recorded = model(x)
        assert calls == []
    torch.testing.assert_close(inferred, recorded.detach(), rtol=1e-4, atol=1e-4)


# (B, C, H, W): aux_q's maps, odd sizes, channel remainders, a 1 x 1 map.
DEPTHWISE_CASES = [(1, 5, 7, 9), (2, 40, 6, 11), (1, 96, 13, 12), (1, 3, 1, 1), (1, 36, 3, 31)]


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("B,C,H,W", DEPTHWISE_CASES)
def test_depthwise_conv3x3_matches_reference(backend, dtype, B, C, H, W):
    inputs = [randn(B, C, H, W, dtype=dtype, requires_grad=True),
              randn(C, 1, 3, 3, dtype=dtype, requires_grad=True, scale=1 / 3), randn(C, dtype=dtype, requires_grad=True)]
    depthwise = lambda impl: lambda *args: hk.depthwise_conv3x3(*args, backend=impl)  # noqa: E731
    compare_with_reference(depthwise(backend), depthwise("reference"), inputs, dtype, backend)


# (leading shape, C, hidden, out_features): tokens (B, N, C), a flat batch, vector remainders.
GELU_MLP_CASES = [((2, 37), 24, 50, 7), ((5,), 16, 64, 16), ((1, 3, 4), 9, 13, 5)]


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("leading,C,hidden,out_features", GELU_MLP_CASES)
def test_gelu_mlp_matches_reference(backend, dtype, leading, C, hidden, out_features):
    inputs = [randn(*leading, C, dtype=dtype, requires_grad=True),
              randn(hidden, C, dtype=dtype, requires_grad=True, scale=C ** -0.5),
              randn(hidden, dtype=dtype, requires_grad=True),
              randn(out_features, hidden, dtype=dtype, requires_grad=True, scale=hidden ** -0.5),
              randn(out_features, dtype=dtype, requires_grad=True)]
    mlp = lambda impl: lambda *args: hk.gelu_mlp(*args, backend=impl)  # noqa: E731
    compare_with_reference(mlp(backend), mlp("reference"), inputs, dtype, backend)


@pytest.mark.parametrize("backend", ["reference", *CPP])
def test_depthwise_conv3x3_and_gelu_mlp_bad_input_is_named(backend):
    x, w, b = randn(1, 4, 5, 5), randn(4, 1, 3, 3), randn(4)
    with pytest.raises(ValueError, match="'weight'"):
        hk.depthwise_conv3x3(x, randn(4, 1, 5, 5), b, backend=backend)
    with pytest.raises(ValueError, match="'bias'"):
        hk.depthwise_conv3x3(x, w, randn(3), backend=backend)
    tokens = randn(2, 6, 8)
    with pytest.raises(ValueError, match="'x' must have at least 1 dimension"):
        hk.gelu_mlp(torch.tensor(1.0), randn(16, 1), randn(16), randn(8, 16), randn(8), backend=backend)
    with pytest.raises(TypeError, match="'x' must be a torch.Tensor, got list"):
        hk.gelu_mlp([1.0], randn(16, 1), randn(16), randn(8, 16), randn(8), backend=backend)
    with pytest.raises(ValueError, match="'weight1'"):
        hk.gelu_mlp(tokens, randn(16, 7), randn(16), randn(8, 16), randn(8), backend=backend)
    with pytest.raises(ValueError, match="'weight2'"):
        hk.gelu_mlp(tokens, randn(16, 8), randn(16), randn(8, 15), randn(8), backend=backend)
    with pytest.raises(ValueError, match="'bias2'"):
        hk.gelu_mlp(tokens, randn(16, 8), randn(16), randn(8, 16), randn(9), backend=backend)


@pytest.mark.parametrize("backend", CPP)
def test_depthwise_conv3x3_and_gelu_mlp_opcheck_and_fullgraph_compile(backend):
    inputs = [randn(1, 6, 5, 4, requires_grad=True), randn(6, 1, 3, 3, requires_grad=True), randn(6, requires_grad=True)]
    torch.library.opcheck(torch.ops.hrvit.depthwise_conv3x3_cpp.default, tuple(inputs))
    assert_compiled_matches_eager(lambda *args: hk.depthwise_conv3x3(*args, backend=backend), inputs)
    inputs = [randn(2, 5, 8, requires_grad=True), randn(12, 8, requires_grad=True), randn(12, requires_grad=True),
              randn(4, 12, requires_grad=True), randn(4, requires_grad=True)]
    torch.library.opcheck(torch.ops.hrvit.gelu_mlp_cpp.default, tuple(inputs))
    assert_compiled_matches_eager(lambda *args: hk.gelu_mlp(*args, backend=backend), inputs)


def test_inference_mode_and_no_grad_calls_alternate():
    """Kept buffers and position biases made under torch.inference_mode serve later no-grad calls (an
    inference tensor may not be written outside inference mode) and the other way round."""
    model = HLGClassifier(hk.models.hlg.VARIANTS["tiny"], num_classes=10).eval()
    x = randn(1, 3, 48, 40)
    with torch.inference_mode():
        first = model(x)
    with torch.no_grad():
        second = model(x)
    with torch.inference_mode():
        third = model(x)
    assert torch.equal(first, second) and torch.equal(first, third)


def test_kept_buffers_are_reused_and_bounded(monkeypatch):
    from hrvit_kernels.ops import _alloc
    first = _alloc.scratch("test", (4, 5))
    assert _alloc.scratch("test", (2, 3)).data_ptr() == first.data_ptr()  # reused
    monkeypatch.setattr(_alloc, "KEPT_LIMIT_BYTES", 4 * 100)
    large = _alloc.scratch("test", (11, 10))  # over the limit: a fresh tensor, not kept
    assert large.shape == (11, 10) and _alloc.scratch("test", (4, 5)).data_ptr() == first.data_ptr()
