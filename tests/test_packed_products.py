"""Products by a weight packed once for oneDNN (ops/_packed_products.py: the linear op's and the HLG conv blocks'
inference products of few tokens) against F.linear: odd sizes, strided rows, weights that are views of a
parameter; the packed copy follows in-place changes and swapped data; what is not packed. The linear op (3-D
input; gradients, autocast, counting, compilation and the reference backend get F.linear; bad input named) and
the HLG MLP's op take that path. And the kept values of ops/_kept.py (an eval BatchNorm's affine)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hrvit_kernels as hk
from hrvit_kernels.modules.batchnorm import eval_affine
from hrvit_kernels.ops import _kept, _packed_products as packed
from hrvit_kernels.testing import FP32_SUMMED_TOL, assert_as_accurate_as_reference, randn

needs_packing = pytest.mark.skipif(not packed.supported() or not hk.HAS_EXT,
                                   reason="no oneDNN packed products on this CPU / build")
_FP32 = dict(atol=FP32_SUMMED_TOL[0], rtol=FP32_SUMMED_TOL[1])


def _packs_of(weight: torch.Tensor) -> int:
    base = weight if weight._base is None else weight._base
    return len(_kept._kept.get(base, {}))


# (rows, in_features, out_features): odd counts (no multiple of a vector or a register tile), few rows with
# many features (HLG's last stage), the most rows packed with few features; all above MIN_MULTIPLY_ADDS.
CASES = [(197, 385, 131), (49, 768, 3072), (511, 97, 163)]


@needs_packing
@pytest.mark.parametrize("rows,in_features,out_features", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_packed_product_matches_f_linear(rows, in_features, out_features, with_bias):
    weight = nn.Parameter(randn(out_features, in_features, scale=in_features ** -0.5))
    bias = nn.Parameter(randn(out_features)) if with_bias else None
    x = randn(rows, in_features)
    assert packed.applies(x, weight, bias)
    with torch.no_grad():
        out = packed.linear(x, weight, bias)
    assert _packs_of(weight) == 1 and out.shape == (rows, out_features) and out.dtype == torch.float32
    exact = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert_as_accurate_as_reference(out, F.linear(x, weight, bias), exact, "packed fp32 product", 4.0, 1e-6)
    with torch.no_grad():
        assert torch.equal(packed.linear(x, weight, bias), out) and _packs_of(weight) == 1


@needs_packing
def test_strided_rows_and_views_of_a_parameter():
    conv = nn.Conv2d(97, 303, 1)  # a 1x1 conv's weight, multiplied as (303, 97) through a view
    x = randn(97, 301).t()  # (301, 97) with channel stride 301
    with torch.no_grad():
        out = packed.linear(x, conv.weight.flatten(1), conv.bias)
    assert _packs_of(conv.weight) == 1
    torch.testing.assert_close(out, F.linear(x, conv.weight.flatten(1), conv.bias), **_FP32)


@needs_packing
def test_packed_copy_follows_the_weight():
    layer = nn.Linear(160, 240)
    x = randn(300, 160)
    with torch.no_grad():
        packed.linear(x, layer.weight, layer.bias)
        layer.weight.mul_(-2.0)  # in place: a new version
        torch.testing.assert_close(packed.linear(x, layer.weight, layer.bias), layer(x), **_FP32)
        layer.weight.data = randn(240, 160)  # swapped data, same parameter and version
        torch.testing.assert_close(packed.linear(x, layer.weight, layer.bias), layer(x), **_FP32)
        layer.load_state_dict({"weight": randn(240, 160), "bias": randn(240)})
        torch.testing.assert_close(packed.linear(x, layer.weight, layer.bias), layer(x), **_FP32)
    assert _packs_of(layer.weight) == 1  # one entry, replaced each time


def test_what_is_not_packed():
    """Small products (oneDNN's call costs more), many rows (the BLAS keeps up), weights that are no parameter
    (they would be packed on every call), other dtypes, weights made in inference mode (no version counter)."""
    big = nn.Linear(128, 256)
    x = randn(400, 128)
    assert not packed.applies(randn(64, 128), big.weight, big.bias)  # 2 M multiply-adds
    assert not packed.applies(randn(packed.MAX_ROWS + 1, 128), big.weight, big.bias)
    assert not packed.applies(x, randn(256, 128))
    assert not packed.applies(x.double(), big.weight.double())
    assert not packed.applies(x.bfloat16(), big.weight.bfloat16())
    with torch.inference_mode():
        made_there = nn.Linear(128, 256)
    assert not packed.applies(x, made_there.weight)
    assert packed.applies(x, big.weight, big.bias) == packed.supported()


@needs_packing
def test_hlg_mlp_products_go_packed():
    """The depthwise MLP op (HLG's MLP in eval mode) at a stage-3 shape multiplies by packed weights and matches
    its reference."""
    fc1, fc2, fc3 = nn.Conv2d(96, 384, 1), nn.Conv2d(384, 384, 3, 1, 1, groups=384), nn.Conv2d(384, 96, 1)
    scales = [1 + 0.2 * randn(384) for _ in range(2)]
    shifts = [0.1 * randn(384) for _ in range(2)]
    x = randn(1, 96, 15, 17)
    args = (x, fc1.weight.flatten(1), fc1.bias, scales[0], shifts[0], fc2.weight, fc2.bias, scales[1], shifts[1],
            fc3.weight.flatten(1), fc3.bias)
    with torch.no_grad():
        out = hk.depthwise_mlp(*args, backend="cpp")
        expected = hk.depthwise_mlp(*args, backend="reference")
    assert _packs_of(fc1.weight) == 1 and _packs_of(fc3.weight) == 1
    torch.testing.assert_close(out, expected, **_FP32)


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


def test_kept_values_skip_inference_tensors_and_dispatch_modes():
    with torch.inference_mode():
        made_there = nn.BatchNorm2d(5).eval()
        first = eval_affine(made_there)  # no version counter: computed on every call
        assert eval_affine(made_there)[0] is not first[0]
    norm = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        kept_scale = eval_affine(norm)[0]
        with FlopCounterMode(display=False):  # a mode that counts operations sees them
            assert eval_affine(norm)[0] is not kept_scale
        assert eval_affine(norm)[0] is kept_scale


@needs_packing
def test_linear_op_matches_f_linear():
    layer = hk.modules.Linear(193, 257)
    x = randn(2, 99, 193)  # 198 tokens
    with torch.no_grad():
        out = layer(x)
        assert _packs_of(layer.weight) == 1
        torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), **_FP32)
        many = randn(3, 200, 193)  # 600 tokens: F.linear, bit for bit
        assert torch.equal(layer(many), F.linear(many, layer.weight, layer.bias))


def test_linear_op_elsewhere_is_f_linear():
    """Gradients, the reference backend, autocast, an operation counter and compilation get F.linear."""
    layer = hk.modules.Linear(128, 256)
    x = randn(300, 128, requires_grad=True)
    out, expected = layer(x), F.linear(x, layer.weight, layer.bias)
    assert torch.equal(out, expected)
    for g, e in zip(torch.autograd.grad(out.sum(), [x, layer.weight]),
                    torch.autograd.grad(expected.sum(), [x, layer.weight])):
        assert torch.equal(g, e)
    with torch.no_grad():
        assert torch.equal(hk.linear(x, layer.weight, layer.bias, backend="reference"), expected)
        with hk.use_backend("reference"):
            assert torch.equal(layer(x), expected)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x)
            assert low.dtype == torch.bfloat16 and torch.equal(low, F.linear(x, layer.weight, layer.bias))
        with FlopCounterMode(display=False) as counter:
            layer(x)
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(x), expected)
    assert counter.get_total_flops() == 2 * 300 * 128 * 256
    assert _packs_of(layer.weight) == 0


@pytest.mark.parametrize("args,name", [
    ((randn(5, 7), randn(3, 8)), "weight"), ((randn(5, 7), randn(3, 7), randn(4)), "bias"),
    (([1.0] * 7, randn(3, 7)), "x"), ((randn(5, 7), "w"), "weight"), ((randn(5, 7), randn(7)), "weight")])
def test_linear_op_names_bad_input(args, name):
    with pytest.raises((TypeError, ValueError), match=f"linear: argument '{name}'"):
        hk.linear(*args)
