"""The LayerNorm op (layer_norm, add_layer_norm) on the C++ backend against the reference: forward and every
gradient, fp32 / fp16 / bf16, odd widths (vector remainders), rows wider than the kernel's stack tile, strided
rows, mixed dtypes and the output dtype of a following product, a large mean, bad input, opcheck and
torch.compile; and HRViT's block, whose inference runs its norms through the op, against the release sequence."""
import pytest
import torch
import torch.nn.functional as F

import hrvit_kernels as hk
from hrvit_kernels.models.hrvit import HRViTBlock
from hrvit_kernels.testing import (MODEL_TOL, assert_as_accurate_as_reference, assert_close_within,
                                   assert_compiled_matches_eager, non_contiguous, randn)
from op_cases import compare_with_reference, with_dtypes

CPP = [pytest.param("cpp", marks=pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built"))]

# (leading shape, C): tokens, a flat batch, widths with 16-, 8-, 4-lane and scalar remainders, one channel, a
# width beyond the 1024 floats the kernel sums on its stack, and whole vectors (1, 2, 4 and 8 with AVX-512),
# which the kernel keeps in registers.
CASES = [((2, 37), 24), ((5,), 16), ((1, 3, 4), 9), ((3,), 1), ((1, 50), 32), ((2, 3), 1030), ((1, 7), 64),
         ((2, 5), 128)]


def _inputs(leading, C, dtype, residual=True):
    tensors = [randn(*leading, C, dtype=dtype, requires_grad=True, scale=2.0)]
    if residual:
        tensors.append(randn(*leading, C, dtype=dtype, requires_grad=True))
    return tensors + [(1 + 0.5 * randn(C)).to(dtype).requires_grad_(), randn(C, dtype=dtype, requires_grad=True)]


def _norm(backend):
    return lambda x, w, b: hk.layer_norm(x, w, b, 1e-5, backend=backend)


def _add_norm(backend):
    return lambda x, r, w, b: hk.add_layer_norm(x, r, w, b, 1e-5, backend=backend)


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("leading,C", CASES)
def test_layer_norm_matches_reference(backend, dtype, leading, C):
    compare_with_reference(_norm(backend), _norm("reference"), _inputs(leading, C, dtype, residual=False), dtype,
                           backend)


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("leading,C", CASES)
def test_add_layer_norm_matches_reference(backend, dtype, leading, C):
    compare_with_reference(_add_norm(backend), _add_norm("reference"), _inputs(leading, C, dtype), dtype, backend)


@pytest.mark.parametrize("backend", CPP)
@pytest.mark.parametrize("layout", ["strided rows", "transposed"])
@pytest.mark.parametrize("C", [32, 40])
def test_strided_inputs(backend, layout, C):
    x, r, w, b = _inputs((2, 19), C, torch.float32)
    if layout == "strided rows":
        x, r = non_contiguous(x.detach()).requires_grad_(), non_contiguous(r.detach()).requires_grad_()
    else:  # channel stride != 1: the tokens of an NCHW map
        x = x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    compare_with_reference(_add_norm(backend), _add_norm("reference"), [x, r, w, b], torch.float32, layout)


@pytest.mark.parametrize("backend", ["reference", *CPP])
@pytest.mark.parametrize("x_dtype,residual_dtype,out_dtype", [
    (torch.float32, torch.bfloat16, torch.bfloat16),  # HRViT under autocast: fp32 stream, bf16 branch outputs
    (torch.float32, torch.float32, torch.bfloat16),
    (torch.bfloat16, torch.bfloat16, torch.float32),
    (torch.float16, torch.float32, torch.float16),
])
def test_mixed_dtypes_and_the_output_dtype(backend, x_dtype, residual_dtype, out_dtype):
    """The sum has x + residual's dtype; the norm is the reference's in the sum's dtype, converted once."""
    x, r = randn(3, 29, 48, dtype=x_dtype), randn(3, 29, 48, dtype=residual_dtype)
    w, b = 1 + 0.5 * randn(48), randn(48)
    total, normed = hk.add_layer_norm(x, r, w, b, out_dtype=out_dtype, backend=backend)
    expected_total = x + r
    assert total.dtype == expected_total.dtype and normed.dtype == out_dtype
    torch.testing.assert_close(total, expected_total, atol=0, rtol=0)
    expected = F.layer_norm(expected_total.float(), (48,), w, b).to(out_dtype)
    one_rounding = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[out_dtype]
    torch.testing.assert_close(normed.float(), expected.float(), atol=one_rounding, rtol=one_rounding)
    alone = hk.layer_norm(x, w, b, out_dtype=out_dtype, backend=backend)
    assert alone.dtype == out_dtype
    torch.testing.assert_close(alone.float(), F.layer_norm(x.float(), (48,), w, b).to(out_dtype).float(),
                               atol=one_rounding, rtol=one_rounding)


@pytest.mark.parametrize("backend", CPP)
def test_large_mean_keeps_the_variance(backend):
    """Rows far from zero (mean 1000, spread 0.01): the kernel's one-pass statistics shift by each row's first
    element, so they are as accurate as PyTorch's own fp32 LayerNorm."""
    x = 1000 + 0.01 * randn(64, 96)
    w, b = 1 + 0.5 * randn(96), randn(96)
    exact = F.layer_norm(x.double(), (96,), w.double(), b.double())
    assert_as_accurate_as_reference(hk.layer_norm(x, w, b, backend=backend), F.layer_norm(x, (96,), w, b), exact,
                                    "large mean", factor=2.0, floor=1e-6)


@pytest.mark.parametrize("backend", ["reference", *CPP])
def test_bad_input_is_named(backend):
    x, w, b = randn(2, 5, 8), randn(8), randn(8)
    with pytest.raises(TypeError, match="add_layer_norm: argument 'x' must be a torch.Tensor, got list"):
        hk.layer_norm([1.0], w, b, backend=backend)
    with pytest.raises(ValueError, match="'x' must have a non-empty last dimension"):
        hk.layer_norm(torch.tensor(1.0), w, b, backend=backend)
    with pytest.raises(ValueError, match=r"'weight' must have shape \(8,\)"):
        hk.layer_norm(x, randn(7), b, backend=backend)
    with pytest.raises(ValueError, match="'bias'"):
        hk.layer_norm(x, w, randn(8, 1), backend=backend)
    with pytest.raises(ValueError, match="'residual'"):
        hk.add_layer_norm(x, randn(2, 5, 7), w, b, backend=backend)
    with pytest.raises(TypeError, match="argument 'residual' must be a torch.Tensor, got list"):
        hk.add_layer_norm(x, [1.0], w, b, backend=backend)
    with pytest.raises(ValueError, match="'eps' must be a positive number, got -1"):
        hk.layer_norm(x, w, b, eps=-1, backend=backend)
    with pytest.raises(TypeError, match="'out_dtype' must be one of"):
        hk.layer_norm(x, w, b, out_dtype=torch.int32, backend=backend)
    with pytest.raises(TypeError, match="'x' has unsupported dtype torch.int64"):
        hk.layer_norm(torch.ones(2, 8, dtype=torch.long), w, b, backend=backend)


@pytest.mark.parametrize("backend", CPP)
def test_opcheck_and_fullgraph_compile(backend):
    x, r, w, b = _inputs((2, 5), 8, torch.float32)
    for residual in (r, None):
        torch.library.opcheck(torch.ops.hrvit.add_layer_norm_cpp.default, (x, residual, w, b, 1e-5, torch.float32))
    torch.library.opcheck(torch.ops.hrvit.add_layer_norm_cpp.default,
                          (x, r.detach().bfloat16(), w, b, 1e-5, torch.bfloat16))
    assert_compiled_matches_eager(_add_norm(backend), [x, r, w, b])
    assert_compiled_matches_eager(_norm(backend), [x, w, b])


def _block(dim=32, mlp_ratio=2):
    block = HRViTBlock(dim, head_dim=16, stripe_width=2, mlp_ratio=mlp_ratio, drop_path=0.1)
    for norm in (block.attn_norm, block.ffn_norm, block.attn.attn_bn):  # random, and the attention branch on
        torch.nn.init.normal_(norm.weight, 1.0, 0.3)
        torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    block.attn.attn_bn.running_var.uniform_(0.5, 1.5)
    return block.eval()


@pytest.mark.parametrize("amp", [False, True])
def test_hrvit_block_inference_equals_the_release_sequence(amp):
    """Eval and no gradient: the block's norms run as the op (the second fused with its residual sum); the
    result is the release sequence's, in fp32 and under bf16 autocast (fp32 residual stream, bf16 branches)."""
    block, H, W = _block(), 9, 14
    x = randn(2, H * W, 32, scale=2.0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        fused = block(x, H, W)
        with hk.release_ops(block):
            release = block(x, H, W)
    assert fused.dtype == release.dtype
    if amp:  # both round their branch outputs to bf16; the norm's conversion happens at another place
        assert_close_within(fused, release, (3e-2, 3e-2), "bf16 block")
    else:
        assert_close_within(fused, release, MODEL_TOL, "block")


def test_hrvit_block_training_and_gradients_keep_pytorchs_layers():
    block = _block()
    calls = []
    block.ffn_norm.register_forward_hook(lambda *_: calls.append("ffn_norm"))
    x = randn(1, 36, 32, requires_grad=True)
    block(x, 6, 6).sum().backward()  # eval mode, gradients recorded
    assert calls == ["ffn_norm"] and x.grad is not None
    with torch.no_grad():
        block.train()(x, 6, 6)  # training mode (drop path), no gradient
    assert calls == ["ffn_norm"] * 2
    with torch.no_grad():
        block.eval()(x, 6, 6)
    assert calls == ["ffn_norm"] * 2  # inference: the op instead of the module


@pytest.mark.parametrize("backend", CPP)
def test_no_grad_calls_skip_the_dispatcher_and_are_still_counted(backend):
    """A no-gradient eager call runs the C++ function directly (the same result as through the custom op); under
    a dispatch mode such as the multiply-add counter it goes through the op, which counts as PyTorch's
    LayerNorm does (5 per element)."""
    from hrvit_kernels.flops import MacCounter
    from hrvit_kernels.ops.layer_norm import registration

    x, r, w, b = (t.detach() for t in _inputs((2, 37), 32, torch.float32))
    with torch.no_grad():
        direct = hk.add_layer_norm(x, r, w, b, backend=backend)
        dispatched = registration.add_layer_norm_cpp(x, r, w, b, 1e-5, torch.float32)
        with MacCounter() as counter:  # counts only what reaches the dispatcher
            hk.add_layer_norm(x, r, w, b, backend=backend)
        with MacCounter() as expected:
            F.layer_norm(x + r, (32,), w, b)
    for a, e in zip(direct, dispatched):
        torch.testing.assert_close(a, e, atol=0, rtol=0)
    assert counter.total == expected.total == 5 * x.numel()
