"""torch.autocast: every registered family runs forward and backward under bf16 autocast on CPU, train and
eval, on the reference and the default backend, with outputs and gradients close to float32; the ops
cast as PyTorch's matrix-product ops do (and the Triton kernels run under fp16 autocast in the
interpreter)."""
import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import on_backend, randn

from tiny_models import FAMILIES, output_tensors

# Ceiling on the relative L2 errors of PyTorch's own ops under bf16 autocast (the reference backend).
# bf16 keeps 8 bits of mantissa, and train-mode BatchNorm over few values amplifies them: HRViT's
# stride-32 maps at 64 x 64 pixels give BatchNorm 8 values a channel and gradient errors of 0.7, so
# HRViT runs at 128 x 128 (outputs ~0.06, gradients ~0.22 in train mode).
REFERENCE_CEILING = 0.4
INPUT_SIZE = {"hrvit_b1": 128, "hrvit_b1_segformer": 128, "setr_hlg_small": 96}


def _run(model, x, autocast: bool):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same dropout and drop-path draws in both runs
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outs = output_tensors(model(x))
    g = torch.Generator().manual_seed(2)
    loss = sum((o.float() * torch.randn(o.shape, generator=g)).sum() for o in outs)
    loss.backward()
    return outs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _errors(model, x, backend):
    """Relative L2 errors of the outputs (worst one) and of all parameter gradients together, bf16
    autocast against float32, on one backend."""
    with on_backend(model, backend):
        expected, expected_grads = _run(model, x, autocast=False)
        actual, grads = _run(model, x, autocast=True)
    assert len(actual) == len(expected) and grads.keys() == expected_grads.keys()
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and torch.isfinite(a).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    names = sorted(grads)
    grad_err = _rel(torch.cat([grads[n].flatten() for n in names]), torch.cat([expected_grads[n].flatten() for n in names]))
    return max(_rel(a, e) for a, e in zip(actual, expected)), grad_err


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_runs_under_bf16_autocast_close_to_fp32(name, mode):
    """The reference backend is PyTorch's own ops under autocast; the default backend (the C++ kernels)
    must be as accurate: error at most twice the reference's plus a small floor."""
    torch.manual_seed(0)
    model = getattr(hk.create_model(name, **FAMILIES[name]), mode)()
    for m in model.modules():  # trained-looking statistics and a live attention branch (release init: 0)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.running_var, 0.5, 1.5)
    size = INPUT_SIZE.get(name, 64)
    x = randn(2, 3, size, size)
    reference = _errors(model, x, "reference")
    default = _errors(model, x, "auto")
    assert max(reference) < REFERENCE_CEILING, f"reference under autocast: errors {reference}"
    for what, err, ref in zip(("output", "gradient"), default, reference):
        assert err <= 2 * ref + 0.01, f"{what}: error {err:.3g} against float32 > 2 x the reference's {ref:.3g} + 0.01"


def _op_cases():
    x = randn(2, 6 * 7, 16)
    conv = dict(weight3=randn(8, 1, 3, 3), bias3=randn(8), weight5=randn(8, 1, 5, 5), bias5=randn(8))
    q, kv = randn(2, 6 * 7, 16), randn(2, 6 * 7, 16)
    return {
        "cswin_attention": (lambda q, k, backend: hk.cswin_attention(q, k, k, (6, 7), 2, 4, backend=backend), (q, kv)),
        "mix_conv_gelu": (lambda x, w3, b3, w5, b5, backend: hk.mix_conv_gelu(x, (6, 7), w3, b3, w5, b5, backend=backend),
                          (x, *conv.values())),
        "attention_to_mask": (lambda q, k, v, backend: hk.attention_to_mask(q, k, v, 2, backend=backend),
                              (randn(2, 5, 16), kv, randn(2, 6 * 7, 16))),
    }


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("op", ["cswin_attention", "mix_conv_gelu", "attention_to_mask"])
def test_ops_under_autocast_run_in_the_autocast_dtype(op, backend):
    """Float32 inputs (activations and parameters) under autocast give the result of the same call on
    inputs cast to the autocast dtype, and float32 gradients; Triton runs in fp16 (the interpreter gets
    bf16 dot products wrong), the others in bf16."""
    if backend == "cpp" and not hk.HAS_EXT:
        pytest.skip("the C++ extension is not built")
    dtype = torch.float16 if backend == "triton" else torch.bfloat16
    fn, inputs = _op_cases()[op]
    inputs = [t.clone().requires_grad_() for t in inputs]
    with torch.autocast("cpu", dtype=dtype):
        outs = fn(*inputs, backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs,)
    cast = [t.detach().to(dtype).requires_grad_() for t in inputs]
    expected = fn(*cast, backend=backend)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for a, e in zip(outs, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a, e, atol=0, rtol=0)
    g = [randn(*o.shape).to(dtype) for o in outs]
    grads = torch.autograd.grad(outs, inputs, g)
    expected_grads = torch.autograd.grad(expected, cast, g)
    for a, e in zip(grads, expected_grads):
        assert a.dtype == torch.float32  # the gradient of a float32 leaf
        torch.testing.assert_close(a, e.float(), atol=0, rtol=0)


def test_resize_sum_under_autocast_promotes_to_the_widest_map():
    maps = [randn(1, 3, 4, 5).to(torch.bfloat16), randn(1, 3, 8, 9)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hk.resize_sum(maps, (8, 9))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, hk.resize_sum([maps[0].float(), maps[1]], (8, 9)), atol=0, rtol=0)


def test_hrvit_keeps_its_residual_stream_fp32_under_cpu_autocast(monkeypatch):
    """As under CUDA autocast (whose LayerNorm runs in fp32): the blocks add their bf16 branches to an fp32 sum,
    and the bf16 logits are closer to float64 than with a bf16 stream; a bf16 model without autocast stays bf16.
    Both ways a block runs: its forward (the release sequence) and the inference step of the rewrites."""
    from hrvit_kernels.models import hrvit

    torch.manual_seed(0)
    model = hk.create_model("hrvit_b1_segformer", **FAMILIES["hrvit_b1_segformer"]).eval()
    stream_dtypes = set()
    for m in model.modules():
        if isinstance(m, hrvit.HRViTBlock):
            m.register_forward_hook(lambda m, i, out: stream_dtypes.add(out.dtype))
    inference_step = hrvit.HRViTBlock.inference_step

    def recorded_step(self, *args):
        x, pending = inference_step(self, *args)
        stream_dtypes.add(x.dtype)
        return x, pending

    monkeypatch.setattr(hrvit.HRViTBlock, "inference_step", recorded_step)
    x = randn(1, 3, 128, 128)
    for release in (True, False):
        with torch.no_grad(), hk.release_ops(model, release):
            expected = model.double()(x.double())
            model.float()
            stream_dtypes.clear()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
            assert stream_dtypes == {torch.float32}
            with monkeypatch.context() as bf16_stream:  # what autocast alone keeps: bf16
                bf16_stream.setattr(hrvit, "_residual_stream", lambda tokens: tokens)
                bf16_stream.setattr(hrvit, "_residual_stream_dtype", lambda x: torch.bfloat16)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    bf16_stream_logits = model(x)
            assert _rel(logits.double(), expected) < _rel(bf16_stream_logits.double(), expected)
            stream_dtypes.clear()
            model.bfloat16()(x.bfloat16())
            assert stream_dtypes == {torch.bfloat16}
