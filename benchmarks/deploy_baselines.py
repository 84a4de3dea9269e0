"""What CPU deployers run instead of PyTorch: ONNX Runtime and OpenVINO on the model exported to ONNX from the
release's sequence of ops. Each contender is a callable (input tensor -> output array) built once; missing
packages give a note instead of a contender."""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import torch

from hrvit_kernels.testing import on_backend


def export_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """The release's sequence of standard operators (the TorchScript exporter: seconds, where the dynamo one
    takes minutes on these models)."""
    with torch.no_grad(), on_backend(model, "reference"):
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"], output_names=["logits"])


def deploy_contenders(model: torch.nn.Module, x: torch.Tensor, threads: int) -> tuple[dict, list[str], object]:
    """({label: callable}, notes, temporary folder to keep alive while the callables run)."""
    notes, contenders = [], {}
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    have_ov = importlib.util.find_spec("openvino") is not None
    if not have_ort:
        notes.append("onnxruntime is not installed (pip install -e \".[deploy]\"): no ONNX Runtime rows")
    if not have_ov:
        notes.append("openvino is not installed (pip install -e \".[deploy]\"): no OpenVINO rows")
    if not (have_ort or have_ov):
        return contenders, notes, None
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / "model.onnx"
    export_onnx(model, x, path)
    array = x.numpy()
    if have_ort:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        contenders["onnxruntime fp32"] = lambda: session.run(None, {"image": array})[0]
    if have_ov:
        import openvino as ov

        core = ov.Core()
        for label, precision in (("openvino f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("openvino default", {})):
            compiled = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_NUM_THREADS": threads, **precision})
            request = compiled.create_infer_request()
            contenders[label] = (lambda r: lambda: r.infer({0: array})[0].copy())(request)
        notes.append("openvino default: the CPU plugin's own precision (bf16 where the CPU has AMX / AVX-512-BF16: "
                     f"{', '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))})")
    return contenders, notes, folder
