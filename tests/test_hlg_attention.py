"""HLG's local window attention and global window-token attention on every backend, one case list each: the
reference against naive loops written here (outputs and every gradient, the bias included), each kernel
against the reference (fp32 / fp16 / bf16), strided inputs, any thread count, sharp logits, opcheck and
torch.compile, bad input."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_compiled_matches_eager, non_contiguous, randn
from naive import hlg_global_attention_naive, hlg_local_attention_naive
from op_cases import (KERNEL_BACKENDS, cases, compare_sharp_logits, compare_with_reference, device_of, hlg_global,
                      hlg_local, skip_outside_the_interpreter_subset, with_dtypes)

# (B, H, W, C, heads, dilated): whole windows (HLG at 224: 56/28/14), padded last windows in one or both
# directions, a map smaller than a window, one head, head dims 16-64.
LOCAL_CASES = [(1, 14, 14, 64, 2, False), (1, 14, 14, 64, 2, True), (2, 15, 17, 48, 3, True),
               (1, 9, 23, 32, 1, False), (1, 5, 3, 32, 2, True), (2, 28, 28, 32, 2, True), (1, 21, 8, 64, 1, True),
               (1, 16, 16, 96, 3, False)]
LOCAL_INTERPRETER = [(1, 14, 14, 64, 2, True), (2, 15, 17, 48, 3, True), (1, 5, 3, 32, 2, True)]
# (B, H, W, M, C, heads): window tokens of a padded map (M = windows), the last stage (M = H*W), one key, more
# keys than one key block.
GLOBAL_CASES = [(1, 14, 14, 4, 64, 2), (2, 15, 17, 9, 48, 3), (1, 7, 7, 49, 64, 2), (1, 20, 9, 40, 32, 1),
                (1, 6, 5, 1, 32, 2), (1, 16, 16, 130, 32, 1), (2, 28, 28, 16, 96, 3)]
GLOBAL_INTERPRETER = [(2, 15, 17, 9, 48, 3), (1, 7, 7, 49, 64, 2), (1, 6, 5, 1, 32, 2)]


def _local_inputs(B, H, W, C, heads, dtype=torch.float32, device="cpu"):
    return (randn(B, H * W, C, dtype=dtype, device=device, requires_grad=True),
            randn(B, H * W, C, dtype=dtype, device=device, requires_grad=True),
            randn(heads, 49, 49, dtype=dtype, device=device, requires_grad=True))


def _global_inputs(B, H, W, M, C, heads, dtype=torch.float32, device="cpu"):
    return (randn(B, H * W, C, dtype=dtype, device=device, requires_grad=True),
            randn(B, M, C, dtype=dtype, device=device, requires_grad=True),
            randn(B, M, C, dtype=dtype, device=device, requires_grad=True),
            randn(heads, (2 * H - 1) * (2 * W - 1), dtype=dtype, device=device, requires_grad=True))


@pytest.mark.parametrize("B,H,W,C,heads,dilated", LOCAL_CASES)
def test_local_reference_matches_naive(B, H, W, C, heads, dilated):
    scale = (C // heads) ** -0.5
    compare_with_reference(hlg_local("reference", H, W, dilated),
                           lambda q, v, b: hlg_local_attention_naive(q, v, H, W, dilated, b, scale),
                           _local_inputs(B, H, W, C, heads), torch.float32, "reference", summed=(3,))


@pytest.mark.parametrize("B,H,W,M,C,heads", GLOBAL_CASES)
def test_global_reference_matches_naive(B, H, W, M, C, heads):
    scale = (C // heads) ** -0.5
    compare_with_reference(hlg_global("reference", H, W),
                           lambda q, k, v, t: hlg_global_attention_naive(q, k, v, H, W, t, scale),
                           _global_inputs(B, H, W, M, C, heads), torch.float32, "reference", summed=(2, 3, 4, 5))


@pytest.mark.parametrize("backend,dtype", with_dtypes())
@pytest.mark.parametrize("B,H,W,C,heads,dilated", cases(LOCAL_CASES, LOCAL_INTERPRETER))
def test_local_kernel_matches_reference(request, backend, dtype, B, H, W, C, heads, dilated):
    skip_outside_the_interpreter_subset(request, backend)
    compare_with_reference(hlg_local(backend, H, W, dilated), hlg_local("reference", H, W, dilated),
                           _local_inputs(B, H, W, C, heads, dtype, device_of(backend)), dtype, backend, summed=(3,))


@pytest.mark.parametrize("backend,dtype", with_dtypes())
@pytest.mark.parametrize("B,H,W,M,C,heads", cases(GLOBAL_CASES, GLOBAL_INTERPRETER))
def test_global_kernel_matches_reference(request, backend, dtype, B, H, W, M, C, heads):
    skip_outside_the_interpreter_subset(request, backend)
    compare_with_reference(hlg_global(backend, H, W), hlg_global("reference", H, W),
                           _global_inputs(B, H, W, M, C, heads, dtype, device_of(backend)), dtype, backend,
                           summed=(2, 3, 4, 5))


# (H, W, gh, gw, M): SETR-HLG's head looks up the bias of an H x W map for its window grid: 8 x 8 groups of a
# dilated layer, ceil(side / 7) windows per side of a contiguous one.
KEY_GRIDS = [(8, 8, 8, 8, 64), (10, 12, 2, 2, 4), (9, 13, 2, 2, 4), (12, 9, 8, 8, 64)]


@pytest.mark.parametrize("backend", ["reference", *KERNEL_BACKENDS])
@pytest.mark.parametrize("H,W,gh,gw,M", KEY_GRIDS)
def test_global_attention_against_a_key_grid(backend, H, W, gh, gw, M):
    inputs = _global_inputs(1, H, W, M, 64, 2, device=device_of(backend))
    if backend == "reference":
        compare_with_reference(lambda *t: hk.hlg_global_attention(*t[:3], (H, W), t[3], key_grid=(gh, gw),
                                                                  backend="reference"),
                               lambda q, k, v, t: hlg_global_attention_naive(q, k, v, H, W, t, 32 ** -0.5, (gh, gw)),
                               inputs, torch.float32, "reference", summed=(2, 3, 4, 5))
        return
    call = lambda impl: lambda *t: hk.hlg_global_attention(*t[:3], (H, W), t[3], key_grid=(gh, gw),  # noqa: E731
                                                           backend=impl)
    compare_with_reference(call(backend), call("reference"), inputs, torch.float32, backend, summed=(2, 3, 4, 5))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_strided_inputs(backend):
    """q and v as halves of one projection's output, k and v of the window tokens likewise."""
    device = device_of(backend)
    qv = randn(2, 15 * 17, 96, device=device, requires_grad=True)
    bias = randn(3, 49, 49, device=device, requires_grad=True)
    compare_with_reference(lambda x, b: hlg_local(backend, 15, 17, True)(x[..., :48], x[..., 48:], b),
                           lambda x, b: hlg_local("reference", 15, 17, True)(x[..., :48], x[..., 48:], b),
                           (qv, bias), torch.float32, "strided local", summed=(2, 3))
    q = non_contiguous(randn(1, 15 * 17, 48, device=device, requires_grad=True))
    kv = randn(1, 9, 96, device=device, requires_grad=True)
    table = randn(3, 29 * 33, device=device, requires_grad=True)
    compare_with_reference(lambda q, kv, t: hlg_global(backend, 15, 17)(q, kv[..., :48], kv[..., 48:], t),
                           lambda q, kv, t: hlg_global("reference", 15, 17)(q, kv[..., :48], kv[..., 48:], t),
                           (q, kv, table), torch.float32, "strided global", summed=(1, 2, 3))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built")
def test_cpp_any_thread_count(threads):
    """Per-thread partial gradients (bias tables, global keys and values) are summed at the end."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        compare_with_reference(hlg_local("cpp", 15, 17, True), hlg_local("reference", 15, 17, True),
                               _local_inputs(2, 15, 17, 64, 2), torch.float32, "cpp local", summed=(3,))
        compare_with_reference(hlg_global("cpp", 15, 17), hlg_global("reference", 15, 17),
                               _global_inputs(2, 15, 17, 9, 64, 2), torch.float32, "cpp global", summed=(2, 3, 4, 5))
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_sharp_logits(backend):
    """Logits of standard deviation ~100 plus a bias of ~20: outputs and the q, k, v gradients as close to
    float64 as the float32 reference's. (The bias gradients, sums of nearly cancelling terms here, are
    checked on ordinary logits above.)"""
    device = device_of(backend)
    bias = randn(2, 49, 49, scale=20.0, device=device)
    local = (randn(1, 14 * 14, 64, scale=8.0, device=device), randn(1, 14 * 14, 64, device=device))
    compare_sharp_logits(lambda impl: lambda q, v: hlg_local(impl, 14, 14, True)(q, v, bias.to(q.dtype)), backend,
                         local)
    table = randn(2, 27 * 27, scale=20.0, device=device)
    glob = (randn(1, 14 * 14, 64, scale=8.0, device=device), randn(1, 130, 64, scale=8.0, device=device),
            randn(1, 130, 64, device=device))
    compare_sharp_logits(lambda impl: lambda q, k, v: hlg_global(impl, 14, 14)(q, k, v, table.to(q.dtype)), backend,
                         glob)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck_and_fullgraph_compile(backend):
    device = device_of(backend)
    q, v, bias = _local_inputs(1, 9, 10, 32, 2, device=device)
    torch.library.opcheck(getattr(torch.ops.hrvit, f"hlg_local_attention_{backend}").default,
                          (q, v, 9, 10, True, bias, 0.25))
    assert_compiled_matches_eager(hlg_local(backend, 9, 10, True), (q, v, bias))
    q, k, v, table = _global_inputs(1, 9, 10, 4, 32, 2, device=device)
    torch.library.opcheck(getattr(torch.ops.hrvit, f"hlg_global_attention_{backend}").default,
                          (q, k, v, 9, 10, 9, 10, table, 0.25))
    assert_compiled_matches_eager(hlg_global(backend, 9, 10), (q, k, v, table))


def test_reference_gradcheck_fp64():
    q, v, bias = (randn(*s, dtype=torch.float64, requires_grad=True) for s in ((1, 40, 8), (1, 40, 8), (2, 49, 49)))
    assert torch.autograd.gradcheck(lambda *t: hk.hlg_local_attention(t[0], t[1], (5, 8), True, t[2],
                                                                      backend="reference"), (q, v, bias))
    q, k, v, t = (randn(*s, dtype=torch.float64, requires_grad=True)
                  for s in ((1, 20, 8), (1, 3, 8), (1, 3, 8), (2, 9 * 7)))
    assert torch.autograd.gradcheck(lambda *a: hk.hlg_global_attention(*a[:3], (5, 4), a[3], backend="reference"),
                                    (q, k, v, t))


@pytest.mark.parametrize("backend", ["reference", *KERNEL_BACKENDS])
def test_bad_input_is_named_and_changes_nothing(backend):
    q, v, bias = _local_inputs(1, 5, 6, 32, 2)
    with pytest.raises(ValueError, match="argument 'hw' = \\(5, 5\\) gives H\\*W = 25 tokens"):
        hk.hlg_local_attention(q, v, (5, 5), False, bias, backend=backend)
    with pytest.raises(ValueError, match="argument 'bias' must have shape \\(heads, 49, 49\\)"):
        hk.hlg_local_attention(q, v, (5, 6), False, bias[:, :48], backend=backend)
    with pytest.raises(ValueError, match="C = 32 must be divisible by the number of heads \\(bias.shape\\[0\\]\\) = 3"):
        hk.hlg_local_attention(q, v, (5, 6), False, randn(3, 49, 49), backend=backend)
    with pytest.raises(TypeError, match="argument 'dilated' must be a bool, got 1"):
        hk.hlg_local_attention(q, v, (5, 6), 1, bias, backend=backend)
    k = randn(1, 31, 32)
    table = randn(2, 9 * 11)
    with pytest.raises(ValueError, match="argument 'k' must have between 1 and 30 keys"):
        hk.hlg_global_attention(q, k, k, (5, 6), table, backend=backend)
    with pytest.raises(ValueError, match="argument 'bias_table' must have shape \\(heads, at least 99\\)"):
        hk.hlg_global_attention(q, k[:, :4], k[:, :4], (5, 6), table[:, :98], backend=backend)
    with pytest.raises(ValueError, match="argument 'k' must have between 1 and 4 keys .* 2x2 key grid"):
        hk.hlg_global_attention(q, k[:, :5], k[:, :5], (5, 6), table, key_grid=(2, 2), backend=backend)
    with pytest.raises(TypeError, match="argument 'v' has dtype torch.float64"):
        hk.hlg_local_attention(q, v.double(), (5, 6), False, bias, backend=backend)
