"""Each custom op declares its multiply-adds once (hrvit_kernels.flops.register_op_macs): the fvcore-style
MacCounter and PyTorch's FlopCounterMode (2 FLOPs per multiply-add) read the same formula, on every
kernel backend, and the benchmark's FLOP rate comes from the counter."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import hrvit_kernels as hk
from hrvit_kernels.flops import MacCounter
from hrvit_kernels.ops.attention_to_mask.registration import attention_to_mask_macs
from hrvit_kernels.ops.cswin_attention.registration import stripe_attention_macs
from hrvit_kernels.ops.mixcfn.registration import mix_conv_macs
from hrvit_kernels.testing import randn

ROOT = Path(__file__).resolve().parents[1]
KERNEL_BACKENDS = [pytest.param("cpp", marks=pytest.mark.skipif(not hk.HAS_EXT, reason="no C++ extension")),
                   pytest.param("triton", marks=pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                                                   reason="triton is not installed"))]


def _calls(backend):
    """(name, forward call, expected forward multiply-adds, backward multiply-adds per forward one)."""
    q, v = randn(2, 5 * 7, 64, requires_grad=True), randn(2, 5 * 7, 64, requires_grad=True)
    x = randn(1, 5 * 7, 22, requires_grad=True)
    w3, b3, w5, b5 = (randn(11, 1, 3, 3, requires_grad=True), randn(11, requires_grad=True),
                      randn(11, 1, 5, 5, requires_grad=True), randn(11, requires_grad=True))
    aq, ak = randn(1, 9, 48, requires_grad=True), randn(1, 13, 48, requires_grad=True)
    return [
        ("cswin_attention", lambda: hk.cswin_attention(q, v, v, (5, 7), 3, 32, backend=backend),
         stripe_attention_macs(2, 5, 7, 64, 3), 2.5),
        ("mix_conv_gelu", lambda: hk.mix_conv_gelu(x, (5, 7), w3, b3, w5, b5, backend=backend),
         mix_conv_macs((1, 35, 22), 11), 3),
        ("attention_to_mask", lambda: hk.attention_to_mask(aq, ak, ak, 3, backend=backend)[0],
         attention_to_mask_macs(1, 9, 13, 48), 2.5),
    ]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_both_counters_read_one_formula(backend):
    for name, call, macs, backward_factor in _calls(backend):
        with MacCounter() as counter:
            call()
        assert counter.by_op == {f"{name}_{backend}": macs}, name
        with FlopCounterMode(display=False) as flops:
            out = call()
            out.backward(torch.randn_like(out))
        counts = {str(op): n for op, n in flops.get_flop_counts()["Global"].items()}
        assert counts[f"hrvit.{name}_{backend}"] == 2 * macs, name
        assert counts[f"hrvit.{name}_{backend}_bwd"] == 2 * backward_factor * macs, name


@pytest.mark.skipif(not hk.HAS_EXT, reason="no C++ extension")
def test_resize_sum_counts_each_resized_map():
    maps = [randn(2, 3, 5, 6), randn(2, 3, 3, 3), randn(2, 3, 2, 4)]
    with MacCounter() as counter:
        hk.resize_sum(maps, (5, 6), backend="cpp")
    assert counter.total == 4 * 2 * 3 * 5 * 6 * 2  # fvcore's 4 per output element, two maps resized


@pytest.mark.skipif(not hk.HAS_EXT, reason="no C++ extension")
def test_benchmark_reads_forward_flops_from_the_counter():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cases import OpCase
    from run import forward_flops, make_op_inputs

    case = OpCase("cswin_attention", "test", dict(B=1, H=9, W=10, C=64, stripe_width=2, head_dim=32))
    _, call = make_op_inputs(case, "cpu", torch.float32, requires_grad=False)
    assert forward_flops(case, call) == 2 * stripe_attention_macs(1, 9, 10, 64, 2)
    resize = OpCase("resize_sum", "test", dict(B=1, C=2, sizes=[(4, 4), (2, 2)], size=(4, 4)))
    assert forward_flops(resize, make_op_inputs(resize, "cpu", torch.float32, False)[1]) is None
