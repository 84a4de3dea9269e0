"""The C++ forward kernels that read and write bf16 themselves (stripe attention, MixCFN, resize-sum): with
fp32 products they compute in fp32 and round once, so their output is bit for bit the fp32 kernel's output on
the same values, rounded to bf16 (round to nearest even, as PyTorch converts), for every layout the models
pass: strided slices, k that is v, head dims that take either value layout, odd sizes, channel remainders.
The bf16 matrix products of the stripe attention and attention-to-mask (AVX-512-BF16, detected at run time) are
held to the low-precision rule against float64 instead, forward and backward."""
from pathlib import Path

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels import _ext
from hrvit_kernels.ops import _cpu_common
from hrvit_kernels.testing import non_contiguous, randn
from op_cases import atm, compare_with_reference, cswin, mix, mix_inputs, resize

pytestmark = pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")

STRIPE_CASES = [(2, 8, 8, 64, 2, 32), (1, 7, 9, 96, 2, 24), (2, 11, 6, 64, 7, 16), (1, 9, 7, 96, 3, 48),
                (1, 30, 10, 32, 10, 16), (1, 40, 7, 32, 20, 16)]  # the last: 140 keys, two key blocks
needs_bf16_dots = pytest.mark.skipif(not _cpu_common.bf16_dot_products(), reason="this CPU has no AVX-512-BF16")


@pytest.fixture
def fp32_products(monkeypatch):
    monkeypatch.setattr(_cpu_common, "BF16_DOT_PRODUCTS", False)


def assert_bf16_path_rounds_the_fp32_path_once(fn, inputs):
    """fn on bf16 inputs equals fn on the same values in fp32, rounded to bf16, exactly (NaN where it has NaN:
    PyTorch's own conversions disagree on a NaN's bits)."""
    bf16_inputs = [t.detach().bfloat16() for t in inputs]
    fp32_inputs = [t.float() for t in bf16_inputs]
    out = fn(*bf16_inputs)
    expected = fn(*fp32_inputs).bfloat16()
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("B,H,W,C,sw,hd", STRIPE_CASES)
@pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])
def test_stripe_attention(B, H, W, C, sw, hd, alias, fp32_products):
    q, k, v = (randn(B, H * W, C) for _ in range(3))
    assert_bf16_path_rounds_the_fp32_path_once(cswin("cpp", H, W, sw, hd, alias), [q, k, v])


def test_stripe_attention_on_slices_of_a_projection(fp32_products):
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



def test_bf16_products_are_chosen_by_the_cpu_it_runs_on():
    """On for a CPU with AVX-512-BF16, off for any other (the build targets the CPU it runs on, as by default)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((row for row in cpuinfo.splitlines() if row.startswith("flags")), None)
    if line is None:
        pytest.skip("no x86 CPU flags in /proc/cpuinfo (not Linux on x86) to compare the detection with")
    flags = set(line.partition(":")[2].split())
    assert _ext.ext().has_bf16_dot_products() == ({"avx512f", "avx512_bf16"} <= flags)


@needs_bf16_dots
@pytest.mark.parametrize("B,H,W,C,sw,hd", STRIPE_CASES)
@pytest.mark.parametrize("alias", [True, False], ids=["k_is_v", "separate_k"])
def test_stripe_attention_with_bf16_products_is_as_accurate_as_a_bf16_reference(B, H, W, C, sw, hd, alias):
    """Output and gradients (the backward pass takes the forward's saved output and lse) against float64."""
    inputs = [randn(B, H * W, C, dtype=torch.bfloat16, requires_grad=True) for _ in range(2 if alias else 3)]
    compare_with_reference(cswin("cpp", H, W, sw, hd, alias), cswin("reference", H, W, sw, hd, alias), inputs,
                           torch.bfloat16, "bf16 products")


@needs_bf16_dots
def test_bf16_products_run_where_they_are_switched_on(monkeypatch):
    """The bf16 products round the probabilities, so their output differs from the fp32 products' somewhere."""
    H, W, C = 9, 7, 64
    q, k = (randn(1, H * W, C, dtype=torch.bfloat16) for _ in range(2))
    with_bf16 = hk.cswin_attention(q, k, k, (H, W), 3, 32, backend="cpp")
    monkeypatch.setattr(_cpu_common, "BF16_DOT_PRODUCTS", False)
    with_fp32 = hk.cswin_attention(q, k, k, (H, W), 3, 32, backend="cpp")
    assert not torch.equal(with_bf16, with_fp32)


# (B, Q, L, C, heads): SegViT's head dims 32 (and 16, 24, 48), query counts around whole query blocks of 32, key
# counts around whole key blocks of 128 and odd ones (the zero key of V^T's last pair), batch 2.
ATM_CASES = [(1, 150, 300, 512, 16), (2, 37, 203, 96, 3), (1, 5, 7, 32, 2), (2, 33, 129, 64, 4), (1, 64, 128, 48, 1),
             (2, 31, 255, 96, 2)]


@needs_bf16_dots
@pytest.mark.parametrize("B,Q,L,C,heads", ATM_CASES)
def test_attention_to_mask_with_bf16_products_is_as_accurate_as_a_bf16_reference(B, Q, L, C, heads):
    """Output, mask logits and gradients (the backward pass takes the forward's saved output and lse) against
    float64."""
    inputs = [randn(B, n, C, dtype=torch.bfloat16, requires_grad=True) for n in (Q, L, L)]
    compare_with_reference(atm("cpp", heads), atm("reference", heads), inputs, torch.bfloat16, "bf16 products")


@needs_bf16_dots
def test_attention_to_mask_bf16_products_run_where_they_are_switched_on(monkeypatch):
    q, k, v = randn(1, 40, 64, dtype=torch.bfloat16), randn(1, 150, 64, dtype=torch.bfloat16), randn(
        1, 150, 64, dtype=torch.bfloat16)
    with_bf16 = hk.attention_to_mask(q, k, v, 2, backend="cpp")
    monkeypatch.setattr(_cpu_common, "BF16_DOT_PRODUCTS", False)
    with_fp32 = hk.attention_to_mask(q, k, v, 2, backend="cpp")
    assert not torch.equal(with_bf16[0], with_fp32[0])  # the probabilities are rounded for the product with v
    torch.testing.assert_close(with_bf16[1], with_fp32[1], rtol=0, atol=1.6e-2)  # logits: the same products


def test_attention_to_mask_kernel_refuses_bf16_it_cannot_multiply():
    """The binding's own guard: bf16 token tensors without bf16 products (or with an odd head dim) are refused,
    not read as fp32."""
    from hrvit_kernels.ops._cpu_common import token_arg

    q, k = randn(1, 4, 6, dtype=torch.bfloat16), randn(1, 5, 6, dtype=torch.bfloat16)
    out, mask, lse = torch.empty(1, 4, 6), torch.empty(1, 4, 5), torch.empty(1, 2, 4)
    for bf16_dots, heads in ((False, 2), (True, 2)):  # head dim 3: odd
        with pytest.raises(ValueError, match="bf16 inputs need bf16 products"):
            _ext.ext().attention_to_mask_forward(1, 4, 5, 6, heads, 0.5, token_arg(q), token_arg(k), token_arg(k),
                                                 out.data_ptr(), bf16_dots, mask.data_ptr(), lse.data_ptr(), 1)
