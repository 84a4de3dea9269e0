"""The C++ forward kernels that read and write bf16 themselves (stripe attention, MixCFN, resize-sum): on bf16
inputs they compute in fp32 and round once, so their output is bit for bit the fp32 kernel's output on the
same values, rounded to bf16 (round to nearest even, as PyTorch converts), for every layout the models pass:
strided slices, k that is v, head dims that take either value layout, odd sizes, channel remainders."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import non_contiguous, randn
from op_cases import cswin, mix, mix_inputs, resize

pytestmark = pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")


def assert_bf16_path_rounds_the_fp32_path_once(fn, inputs):
    """fn on bf16 inputs equals fn on the same values in fp32, rounded to bf16, exactly (NaN where it has NaN:
    PyTorch's own conversions disagree on a NaN's bits)."""
    bf16_inputs = [t.detach().bfloat16() for t in inputs]
    fp32_inputs = [t.float() for t in bf16_inputs]
    out = fn(*bf16_inputs)
    expected = fn(*fp32_inputs).bfloat16()
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("B,H,W,C,sw,hd", [(2, 8, 8, 64, 2, 32), (1, 7, 9, 96, 2, 24), (2, 11, 6, 64, 7, 16),
                                           (1, 9, 7, 96, 3, 48), (1, 30, 10, 32, 10, 16)])
@pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])
def test_stripe_attention(B, H, W, C, sw, hd, alias):
    q, k, v = (randn(B, H * W, C) for _ in range(3))
    assert_bf16_path_rounds_the_fp32_path_once(cswin("cpp", H, W, sw, hd, alias), [q, k, v])


def test_stripe_attention_on_slices_of_a_projection():
    """q, k and v as thirds of one (B, N, 3C) tensor: token stride 3C, no copies."""
    H, W, C = 9, 7, 64
    qkv = randn(2, H * W, 3 * C).bfloat16()
    q, k, v = qkv.split(C, dim=-1)
    out = hk.cswin_attention(q, k, v, (H, W), 3, 32, backend="cpp")
    expected = hk.cswin_attention(q.float(), k.float(), v.float(), (H, W), 3, 32, backend="cpp").bfloat16()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("B,H,W,R", [(2, 5, 7, 8), (1, 9, 4, 22), (1, 1, 1, 2), (2, 6, 6, 13), (2, 6, 6, 36),
                                     (1, 19, 5, 64), (3, 2, 11, 720), (1, 17, 3, 40)])
def test_mix_conv_gelu(B, H, W, R):
    assert_bf16_path_rounds_the_fp32_path_once(mix("cpp", H, W), mix_inputs(B, H, W, R))


def test_mix_conv_gelu_on_a_strided_input():
    x, *params = (t.bfloat16() for t in mix_inputs(1, 11, 6, 24, requires_grad=False))
    x = non_contiguous(x)
    out = hk.mix_conv_gelu(x, (11, 6), *params, backend="cpp")
    expected = hk.mix_conv_gelu(x.float(), (11, 6), *(p.float() for p in params), backend="cpp").bfloat16()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("B,C,sizes,size", [(1, 3, [(5, 7)], (11, 13)), (2, 4, [(17, 18), (9, 9), (5, 5)], (17, 18)),
                                            (1, 2, [(6, 4), (17, 18)], (17, 18)), (2, 3, [(20, 30), (8, 3)], (7, 5)),
                                            (1, 6, [(32, 32)], (128, 128))])
def test_resize_sum(B, C, sizes, size):
    assert_bf16_path_rounds_the_fp32_path_once(resize("cpp", size), [randn(B, C, h, w) for h, w in sizes])


def test_resize_sum_keeps_infinities_and_nans():
    x = randn(1, 2, 4, 4)
    x[0, 0, 1, 1], x[0, 1, 2, 3], x[0, 1, 0, 0] = float("inf"), float("nan"), -float("inf")
    assert_bf16_path_rounds_the_fp32_path_once(resize("cpp", (7, 9)), [x])
    assert_bf16_path_rounds_the_fp32_path_once(resize("cpp", (4, 4)), [x])

