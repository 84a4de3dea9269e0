"""Every public op rejects bad input before any kernel runs, with a message that names the argument,
the received value and what is accepted; a rejected call leaves its inputs untouched."""
import importlib.util

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import randn


def _cswin_args(**change):
    args = dict(q=randn(1, 12, 32), k=randn(1, 12, 32), v=randn(1, 12, 32), hw=(3, 4), stripe_width=2,
                head_dim=16)
    args.update(change)
    return args


CSWIN_BAD = [
    (dict(q=randn(12, 32)), ValueError, r"'q' must have 3 dimensions, got shape \(12, 32\)"),
    (dict(q=torch.ones(1, 12, 32, dtype=torch.int64)), TypeError, r"'q' has unsupported dtype torch.int64; accepted"),
    (dict(k=randn(1, 12, 16)), ValueError, r"'k' must have shape \(1, 12, 32\).*got \(1, 12, 16\)"),
    (dict(v=randn(1, 12, 32, dtype=torch.float64)), TypeError, r"'v' has dtype torch.float64 but 'q' has torch.float32"),
    (dict(hw=(4, 4)), ValueError, r"'hw' = \(4, 4\) gives H\*W = 16 tokens, but 'q' has N = 12"),
    (dict(hw=(3,)), TypeError, r"'hw' must be a pair of ints"),
    (dict(hw=(3.5, 4)), TypeError, r"'hw' must be a pair of ints \(H, W\), got \(3.5, 4\)"),
    (dict(stripe_width=0), ValueError, r"'stripe_width' must be an int >= 1, got 0"),
    (dict(head_dim=-3), ValueError, r"'head_dim' must be an int >= 1, got -3"),
    (dict(head_dim=12), ValueError, r"C/2 = 16 channels, which is not a multiple of head_dim = 12"),
    (dict(q=randn(1, 12, 31), k=randn(1, 12, 31), v=randn(1, 12, 31)), ValueError, r"must be even.*C = 31"),
    (dict(scale=-1.0), ValueError, r"'scale' must be None or a finite float > 0, got -1.0"),
    (dict(scale=float("nan")), ValueError, r"'scale' must be None or a finite float > 0, got nan"),
    (dict(q=[1, 2]), TypeError, r"'q' must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize("change,exc,pattern", CSWIN_BAD)
def test_cswin_attention_bad_input(change, exc, pattern):
    args = _cswin_args(**change)
    before = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(exc, match="cswin_attention: .*" + pattern):
        hk.cswin_attention(**args)
    for name, t in before.items():
        torch.testing.assert_close(args[name], t, equal_nan=True)


def _mix_args(**change):
    args = dict(x=randn(2, 12, 10), hw=(3, 4), weight3=randn(5, 1, 3, 3), bias3=randn(5),
                weight5=randn(5, 1, 5, 5), bias5=randn(5))
    args.update(change)
    return args


MIX_BAD = [
    (dict(x=randn(2, 12)), ValueError, r"'x' must have 3 dimensions"),
    (dict(hw=(2, 4)), ValueError, r"'hw' = \(2, 4\) gives H\*W = 8 tokens, but 'x' has N = 12"),
    (dict(weight3=randn(5, 1, 5, 5)), ValueError, r"'weight3' must have shape \(5, 1, 3, 3\)"),
    (dict(weight5=randn(4, 1, 5, 5)), ValueError, r"'weight5' must have shape \(5, 1, 5, 5\)"),
    (dict(bias3=randn(6)), ValueError, r"'bias3' must have shape \(5,\), got \(6,\)"),
    (dict(bias5=randn(5, dtype=torch.float16)), TypeError, r"'bias5' has dtype torch.float16 but 'x'"),
    (dict(x=randn(2, 12, 1), weight3=randn(0, 1, 3, 3)), ValueError, r"at least 2 channels"),
    (dict(backend="cuda"), ValueError, r"unknown backend 'cuda'; accepted: auto, reference, triton, cpp"),
]


@pytest.mark.parametrize("change,exc,pattern", MIX_BAD)
def test_mix_conv_gelu_bad_input(change, exc, pattern):
    args = _mix_args(**change)
    before = {k: v.clone() for k, v in args.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(exc, match="mix_conv_gelu: .*" + pattern):
        hk.mix_conv_gelu(**args)
    for name, t in before.items():
        torch.testing.assert_close(args[name], t)


ATM_BAD = [
    (dict(k=randn(2, 7, 16)), ValueError, r"'k' must have shape \(B=2, L, C=32\), got \(2, 7, 16\)"),
    (dict(v=randn(2, 6, 32)), ValueError, r"'v' must have shape \(2, 7, 32\)"),
    (dict(num_heads=3), ValueError, r"C = 32 must be divisible by num_heads = 3"),
    (dict(num_heads=0), ValueError, r"'num_heads' must be an int >= 1, got 0"),
    (dict(q=randn(2, 0, 32)), ValueError, r"at least one query and one key, got Q = 0"),
    (dict(q=randn(2, 5, 32, dtype=torch.bfloat16)), TypeError, r"'k' has dtype torch.float32 but 'q' has torch.bfloat16"),
]


@pytest.mark.parametrize("change,exc,pattern", ATM_BAD)
def test_attention_to_mask_bad_input(change, exc, pattern):
    args = dict(q=randn(2, 5, 32), k=randn(2, 7, 32), v=randn(2, 7, 32), num_heads=4)
    args.update(change)
    with pytest.raises(exc, match="attention_to_mask: .*" + pattern):
        hk.attention_to_mask(**args)


RESIZE_BAD = [
    (dict(maps=randn(1, 2, 3, 3)), TypeError, r"'maps' must be a non-empty list of tensors, got Tensor"),
    (dict(maps=[]), TypeError, r"'maps' must be a non-empty list of tensors, got list"),
    (dict(maps=[randn(1, 2, 3, 3), randn(1, 3, 2, 2)]), ValueError,
     r"'maps\[1\]' must have shape \(B=1, C=2, h >= 1, w >= 1\) like maps\[0\], got \(1, 3, 2, 2\)"),
    (dict(maps=[randn(1, 2, 3)]), ValueError, r"'maps\[0\]' must have 4 dimensions, got shape \(1, 2, 3\)"),
    (dict(maps=[randn(1, 2, 3, 3), randn(1, 2, 3, 3, dtype=torch.float16)]), TypeError,
     r"'maps\[1\]' has dtype torch.float16 but 'maps\[0\]' has torch.float32"),
    (dict(size=(0, 4)), ValueError, r"'size' must be positive, got \(0, 4\)"),
    (dict(size=(2.5, 4)), TypeError, r"'size' must be a pair of ints \(H, W\), got \(2.5, 4\)"),
]


@pytest.mark.parametrize("change,exc,pattern", RESIZE_BAD)
def test_resize_sum_bad_input(change, exc, pattern):
    args = dict(maps=[randn(1, 2, 3, 3)], size=(5, 4))
    args.update(change)
    with pytest.raises(exc, match="resize_sum: .*" + pattern):
        hk.resize_sum(**args)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_backend_that_cannot_run_raises_and_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"cswin_attention: backend 'triton' cannot run this call: tensors are "
                                           r"on cpu; the Triton kernels need CUDA tensors"):
        hk.cswin_attention(**_cswin_args(), backend="triton")


def test_backend_an_op_does_not_offer_raises_with_the_choices():
    from hrvit_kernels.ops import _dispatch

    with pytest.raises(NotImplementedError, match=r"my_op: backend 'cpp' is not implemented for this op; "
                                                  r"available: auto, reference"):
        _dispatch.choose_backend("my_op", "cpp", (randn(2),), {"reference": _dispatch.always})


def test_models_reject_bad_input():
    model = hk.create_model("hrvit_b1")
    with pytest.raises(ValueError, match=r"HRViT: input H and W must be >= 32, got 31 x 64"):
        model(randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"HRViT: input must be \(B, 3, H, W\), got shape \(1, 4, 64, 64\)"):
        model(randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"'stripe_widths' must be four ints >= 1, got \(1, 2, 0, 7\)"):
        hk.create_model("hrvit_b1", stripe_widths=(1, 2, 0, 7))
    with pytest.raises(ValueError, match=r"unknown model 'hrvit_b9'; available: .*\bhrvit_b1, "):
        hk.create_model("hrvit_b9")


# The registered custom ops check their own arguments: torch.ops exposes them without the public
# function, and a kernel given sizes that disagree with its tensors would read or write past their ends.
def _op_calls(backend):
    q, k = randn(1, 12, 32), randn(1, 12, 32)
    out, lse = randn(1, 12, 32), randn(1, 2, 12)
    x, w3, b3, w5, b5 = randn(1, 12, 8), randn(4, 1, 3, 3), randn(4), randn(4, 1, 5, 5), randn(4)
    qa, ka, mask, lse_a = randn(1, 5, 32), randn(1, 7, 32), randn(1, 5, 7), randn(1, 2, 5)
    ops = torch.ops.hrvit
    return [
        (lambda: getattr(ops, f"cswin_attention_{backend}")(q, k, None, 3, 4, 2, 2, 16, 0.25),
         rf"hrvit::cswin_attention_{backend}: arguments 'heads' = 2 and 'head_dim' = 16 do not split each "
         r"half of C = 32 channels; accepted: heads = 1, head_dim = 16"),
        (lambda: getattr(ops, f"cswin_attention_{backend}")(q, k, None, 4, 4, 2, 1, 16, 0.25),
         r"'hw' = \(4, 4\) gives H\*W = 16 tokens, but 'q' has N = 12"),
        (lambda: getattr(ops, f"cswin_attention_{backend}_bwd")(out, q, k, None, out, lse[:, :1], 3, 4, 2, 1, 16,
                                                                 0.25),
         rf"hrvit::cswin_attention_{backend}_bwd: argument 'lse' must have shape \(1, 2, 12\)"),
        (lambda: getattr(ops, f"mix_conv_gelu_{backend}")(x, 4, 4, w3, b3, w5, b5),
         rf"hrvit::mix_conv_gelu_{backend}: argument 'hw' = \(4, 4\) gives H\*W = 16 tokens, but 'x' has N = 12"),
        (lambda: getattr(ops, f"mix_conv_gelu_{backend}_bwd")(x[:, :6], x, 3, 4, w3, b3, w5, b5),
         r"argument 'grad_out' must have shape \(1, 12, 8\)"),
        (lambda: getattr(ops, f"attention_to_mask_{backend}")(qa, ka, ka, 3, 0.25),
         rf"hrvit::attention_to_mask_{backend}: the channel count C = 32 must be divisible by num_heads = 3"),
        (lambda: getattr(ops, f"attention_to_mask_{backend}_bwd")(None, mask[:, :, :6], qa, ka, ka, qa, lse_a, 2,
                                                                   0.25),
         r"argument 'grad_mask' must have shape \(1, 5, 7\) \(\(B, Q, L\)\), got \(1, 5, 6\)"),
    ]


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("case", range(7))
def test_registered_ops_check_their_arguments(backend, case):
    call, pattern = _op_calls(backend)[case]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_registered_resize_ops_check_their_arguments():
    with pytest.raises(ValueError, match=r"hrvit::resize_sum_cpp: argument 'maps\[1\]' must have shape "
                                         r"\(B=1, C=2, h >= 1, w >= 1\) like maps\[0\], got \(1, 3, 3, 3\)"):
        torch.ops.hrvit.resize_sum_cpp([randn(1, 2, 3, 3), randn(1, 3, 3, 3)], 4, 4)
    with pytest.raises(ValueError, match=r"hrvit::resize_backward_cpp: argument '\(map_height, map_width\)' "
                                         r"must be positive, got \(0, 4\)"):
        torch.ops.hrvit.resize_backward_cpp(randn(1, 2, 3, 3), 0, 4)


def test_cpp_ops_reject_tensors_off_the_cpu():
    from hrvit_kernels.ops import _checks

    with pytest.raises(ValueError, match=r"hrvit::cswin_attention_cpp: argument 'q' is on meta; this op runs on "
                                         r"CPU tensors"):
        _checks.check_kernel_device("hrvit::cswin_attention_cpp", "cpp", "q", torch.empty(1, device="meta"))
    _checks.check_kernel_device("hrvit::cswin_attention_triton", "triton", "q", torch.empty(1, device="meta"))
