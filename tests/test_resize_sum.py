"""resize_sum (the SegFormer head's sum of bilinear resizes) on every backend it has (C++, reference), one
case list: forward and every gradient, fp32 / fp16 / bf16, strided inputs, outputs that never alias an
input, opcheck and torch.compile."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import assert_compiled_matches_eager, non_contiguous, randn
from op_cases import compare_with_reference, resize, with_dtypes

CPP = [pytest.param("cpp", marks=pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built"))]

# (B, C, map sizes, output size): up- and down-sampling, odd and non-integer ratios, a map already at the
# output size first, later or not at all, 1 x 1 maps and outputs, a single map (the final logits resize).
CASES = [
    (1, 3, [(5, 7)], (11, 13)),
    (2, 4, [(17, 18), (9, 9), (5, 5), (3, 2)], (17, 18)),
    (1, 2, [(6, 4), (17, 18)], (17, 18)),
    (2, 3, [(20, 30), (8, 3)], (7, 5)),
    (1, 5, [(1, 1), (2, 3)], (3, 4)),
    (3, 2, [(4, 4)], (1, 1)),
    (1, 6, [(32, 32)], (128, 128)),
]


@pytest.mark.parametrize("backend,dtype", with_dtypes(CPP))
@pytest.mark.parametrize("B,C,sizes,size", CASES)
def test_kernel_matches_reference(backend, dtype, B, C, sizes, size):
    maps = [randn(B, C, h, w, dtype=dtype, requires_grad=True) for h, w in sizes]
    compare_with_reference(resize(backend, size), resize("reference", size), maps, dtype, backend)


@pytest.mark.parametrize("backend", CPP)
def test_strided_inputs(backend):
    maps = [non_contiguous(randn(2, 3, 9, 7, requires_grad=True)), randn(2, 3, 4, 5, requires_grad=True)]
    compare_with_reference(resize(backend, (9, 7)), resize("reference", (9, 7)), maps, torch.float32, "strided")


@pytest.mark.parametrize("backend", ["reference", *CPP])
def test_never_returns_or_writes_a_callers_tensor(backend):
    x = randn(1, 2, 4, 4)
    before = x.clone()
    out = hk.resize_sum([x], (4, 4), backend=backend)
    assert out.data_ptr() != x.data_ptr()
    out.add_(1)
    assert torch.equal(x, before)


@pytest.mark.parametrize("backend", CPP)
def test_opcheck_and_fullgraph_compile(backend):
    maps = [randn(1, 2, 5, 6, requires_grad=True), randn(1, 2, 3, 3, requires_grad=True)]
    torch.library.opcheck(torch.ops.hrvit.resize_sum_cpp.default, (maps, 5, 6))
    torch.library.opcheck(torch.ops.hrvit.resize_backward_cpp.default, (randn(1, 2, 5, 6), 3, 3))
    assert_compiled_matches_eager(resize(backend, (5, 6)), maps)
