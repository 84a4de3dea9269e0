"""The linear op: on x86 CPUs, inference products by a weight packed once for oneDNN, against F.linear (fp32 and
under bf16 autocast, odd sizes, 3-D and strided inputs, weights that are views of a parameter); the packed copy
follows in-place changes and swapped data; gradients, tracing, counting and the reference backend get F.linear;
bad input named. And the kept values of modules/_kept.py (an eval BatchNorm's affine)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hrvit_kernels as hk
from hrvit_kernels.modules import Linear
from hrvit_kernels.modules.batchnorm import eval_affine
from hrvit_kernels.ops.linear import packed
from hrvit_kernels.testing import FP32_SUMMED_TOL, assert_as_accurate_as_reference, assert_close_within, randn

PACKS = packed._supported()
needs_packing = pytest.mark.skipif(not PACKS, reason="no oneDNN packed products on this CPU / build")


def _packs_of(weight: torch.Tensor) -> int:
    base = weight if weight._base is None else weight._base
    return len(packed._kept.get(base, {}))


def _parameter(out_features, in_features):
    return nn.Parameter(randn(out_features, in_features, scale=in_features ** -0.5))


# (x's shape, out_features): odd token counts and widths (no multiple of a vector or a register tile), a 3-D
# batch, few rows with many features (HLG's last stage); all above packed.MIN_MULTIPLY_ADDS.
CASES = [((197, 385), 131), ((2, 99, 193), 257), ((49, 768), 3072), ((1, 3137, 97), 45)]


@needs_packing
@pytest.mark.parametrize("shape,out_features", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_packed_product_matches_f_linear(shape, out_features, with_bias):
    weight = _parameter(out_features, shape[-1])
    bias = nn.Parameter(randn(out_features)) if with_bias else None
    x = randn(*shape)
    with torch.no_grad():
        out = hk.linear(x, weight, bias)
    assert _packs_of(weight) == 1, "the product did not go through a packed weight"
    assert out.shape == (*shape[:-1], out_features) and out.dtype == torch.float32
    exact = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert_as_accurate_as_reference(out, F.linear(x, weight, bias), exact, "packed fp32 product", 4.0, 1e-6)
    with torch.no_grad():
        again = hk.linear(x, weight, bias)
    assert _packs_of(weight) == 1 and torch.equal(again, out)


@needs_packing
def test_strided_input_and_views_of_a_parameter():
    conv = nn.Conv2d(97, 303, 1)  # the HLG MLP's 1x1 conv weight, used as (303, 97) through a view
    x = randn(97, 1, 301).transpose(0, 2)  # (301, 1, 97), channel stride 301
    with torch.no_grad():
        out = hk.linear(x, conv.weight.flatten(1), conv.bias)
    assert _packs_of(conv.weight) == 1
    assert_close_within(out, F.linear(x, conv.weight.flatten(1), conv.bias), FP32_SUMMED_TOL)


@needs_packing
def test_packed_copy_follows_the_weight():
    layer = Linear(160, 240)
    x = randn(300, 160)
    with torch.no_grad():
        layer(x)
        layer.weight.mul_(-2.0)  # in place: a new version
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), **_FP32)
        layer.weight.data = randn(240, 160)  # swapped data, same parameter and version
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), **_FP32)
        layer.load_state_dict({"weight": randn(240, 160), "bias": randn(240)})
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), **_FP32)


_FP32 = dict(atol=FP32_SUMMED_TOL[0], rtol=FP32_SUMMED_TOL[1])


@needs_packing
def test_bf16_autocast():
    layer = Linear(257, 300)
    x = randn(2, 70, 257)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        expected = F.linear(x, layer.weight, layer.bias)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert _packs_of(layer.weight) == 1
    exact = F.linear(x.double(), layer.weight.double(), layer.bias.double())
    assert_as_accurate_as_reference(out, expected, exact, "packed bf16 product", 2.0, 1e-2)


def test_gradients_and_reference_backend_take_f_linear():
    layer = Linear(128, 256)
    x = randn(400, 128, requires_grad=True)
    out = layer(x)
    expected = F.linear(x, layer.weight, layer.bias)
    assert torch.equal(out, expected) and _packs_of(layer.weight) == 0
    grads = torch.autograd.grad(out.sum(), [x, layer.weight])
    expected_grads = torch.autograd.grad(expected.sum(), [x, layer.weight])
    for g, e in zip(grads, expected_grads):
        assert torch.equal(g, e)
    with torch.no_grad():
        assert torch.equal(hk.linear(x, layer.weight, layer.bias, backend="reference"), expected)
        with hk.use_backend("reference"):
            assert torch.equal(layer(x), expected)
    assert _packs_of(layer.weight) == 0


def test_what_is_not_packed():
    """Small products (oneDNN's call costs more), weights that are no parameter (packed on every call), a
    dispatch mode that counts the call."""
    small = Linear(96, 96)
    temporary = randn(256, 128)
    big = Linear(128, 256)
    x = randn(400, 128)
    with torch.no_grad():
        small(randn(64, 96))
        torch.testing.assert_close(hk.linear(x, temporary), F.linear(x, temporary))
        with FlopCounterMode(display=False) as counter:
            big(x)
    assert _packs_of(small.weight) == 0 and _packs_of(big.weight) == 0
    assert counter.get_total_flops() == 2 * 400 * 128 * 256


def test_compiles_to_the_same_product():
    layer = Linear(128, 256)
    x = randn(300, 128)
    with torch.no_grad():
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(x), F.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("args,name", [
    ((randn(5, 7), randn(3, 8)), "weight"), ((randn(5, 7), randn(3, 7), randn(4)), "bias"),
    (([1.0] * 7, randn(3, 7)), "x"), ((randn(5, 7), "w"), "weight"), ((randn(5, 7), randn(7)), "weight")])
def test_bad_input_is_named(args, name):
    with pytest.raises((TypeError, ValueError), match=f"linear: argument '{name}'"):
        hk.linear(*args)


def test_kept_batchnorm_affine_follows_its_statistics():
    norm = nn.BatchNorm2d(12).eval()
    norm.running_var.uniform_(0.5, 2.0)
    norm.running_mean.normal_()
    with torch.no_grad():
        scale, shift = eval_affine(norm)
        again = eval_affine(norm)
        assert again[0] is scale and again[1] is shift  # kept
        norm.running_var.mul_(4.0)
        scale4, shift4 = eval_affine(norm)
        torch.testing.assert_close(scale4, scale / 2)
        norm.weight.data = norm.weight.data * 3  # swapped data, same parameter and version
        torch.testing.assert_close(eval_affine(norm)[0], 3 * scale4)
    scale_g, _ = eval_affine(norm)  # a gradient is recorded: computed afresh, with its graph
    assert scale_g.requires_grad and scale_g is not scale4
