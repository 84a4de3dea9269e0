"""Export: ONNX (the default dynamo exporter and the TorchScript one) on the default backend, checked in
ONNX Runtime; torch.export with symbolic height and width, run at another size; torch.jit.trace without
warnings from the input checks."""
import warnings

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.testing import MODEL_TOL, assert_close_fp32, assert_close_within, randn

from test_autocast import FAMILIES

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime, onnxscript) is not installed")

# Stride the token grid needs: HRViT pads to 32 (exports at multiples of 32), the ViTs take any multiple
# of the patch (16), SegViT-Shrunk halves the grid once (32).
GRID = {"hrvit_b1": 32, "hrvit_b1_segformer": 32, "segvit_shrunk_vit_l_ade20k": 32}


def _eval_model(name):
    torch.manual_seed(0)
    return hk.create_model(name, **FAMILIES[name]).eval()


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("name,dynamo", [("hrvit_b1_segformer", True), ("hrvit_b1_segformer", False),
                                         ("segvit_vit_l_ade20k", True), ("setr_mla_vit_l", False)])
def test_onnx_export_on_the_default_backend_matches_eager(tmp_path, name, dynamo):
    model, x = _eval_model(name), randn(1, 3, 64, 96)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' own deprecation and tracer notes
        # optimize=False: the ONNX graph optimiser takes ~90 s on HRViT's graph here and changes no math.
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo, **({"optimize": False} if dynamo else {}))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = _outputs(model(x))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_close_within(torch.from_numpy(a), e, MODEL_TOL, "onnxruntime")


def test_onnx_export_rejects_an_explicit_kernel_backend(tmp_path):
    q = randn(1, 4 * 4, 8)

    class Op(torch.nn.Module):
        def forward(self, q):
            return hk.cswin_attention(q, q, q, (4, 4), 2, 4, backend="cpp")

    with pytest.raises(Exception, match="cannot be exported to ONNX"):
        torch.onnx.export(Op(), (q,), str(tmp_path / "op.onnx"), dynamo=False)


@pytest.mark.parametrize("name", sorted(n for n in FAMILIES if "hlg" not in n))
def test_torch_export_with_symbolic_height_and_width(name):
    """Exported at 64 x 96 with H and W symbolic multiples of the grid stride, run at 128 x 64. (HLG's window
    counts, ceil(side / 7) of every stage's side, make guards that dynamic export cannot express: it exports
    at a fixed size, below.)"""
    from torch.export import Dim

    model, stride = _eval_model(name), GRID.get(name, 16)
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    program = torch.export.export(model, (randn(1, 3, 64, 96),), dynamic_shapes={"x": {2: stride * h, 3: stride * w}})
    x = randn(1, 3, 128, 64)
    with torch.no_grad():
        for a, e in zip(_outputs(program.module()(x)), _outputs(model(x))):
            assert_close_fp32(a, e, "exported")


@pytest.mark.parametrize("name", ["hrvit_b1_segformer", "hlg_tiny", "setr_hlg_small"])
def test_torch_export_at_a_padded_odd_size(name):
    model, x = _eval_model(name), randn(1, 3, 97, 131)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert_close_fp32(program.module()(x), model(x), "exported")


@pytest.mark.parametrize("name", ["hrvit_b1_segformer", "segvit_vit_l_ade20k"])
def test_jit_trace_gives_no_warnings_from_the_checks(name):
    """The only TracerWarnings left are HRViT's padding branch, which a trace does fix to the traced size."""
    model, x = _eval_model(name), randn(1, 3, 64, 96)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each place once, as a user sees them
        traced = torch.jit.trace(model, x, check_trace=False)
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert all(w.filename.endswith("models/hrvit.py") for w in tracer), [(w.filename, w.lineno) for w in tracer]
    assert len(tracer) <= 2
    with torch.no_grad():
        for a, e in zip(_outputs(traced(x)), _outputs(model(x))):
            assert_close_fp32(a, e, "exported")
