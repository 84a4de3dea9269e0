"""The benchmark entry point on a tiny configuration, its output folder and noise flags, and the GPU session
scripts without a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_run_writes_json_and_markdown(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
    finally:
        sys.path.pop(0)
    report = run.main(["--models", "hrvit_b1", "--size", "64", "--repeats", "1", "--op-repeats", "2",
                       "--warmup", "0", "--op-variants", "b1", "--no-atm", "--hlg-variants", "tiny", "--baselines",
                       "--eval-images", "1",
                       "--train-batch", "1", "--out", str(tmp_path)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "md", "svg"]
    saved = json.loads((tmp_path / files[0]).read_text())
    assert saved["environment"]["torch"] and saved["environment"]["date"]
    (model,) = saved["models"]
    assert model["params"] == 7_758_008 and model["gmacs"] > 0
    # ONNX Runtime and OpenVINO on the exported model, where installed, beside the package's backends in fp32
    # and, on CPUs with bf16 instructions, under bf16 autocast.
    bf16 = {"openvino default", "reference bf16", "auto bf16"}
    deploy = {"onnxruntime fp32", "openvino f32"} | bf16
    assert {"reference", "auto"} <= set(model["latency"]) <= {"reference", "auto"} | deploy
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert {"reference bf16", "auto bf16"} <= set(model["latency"])
    for label, entry in model["latency"].items():
        assert entry["forward"]["max_rel_error"] < (3e-2 if label in bf16 else 1e-4), label
    assert model["latency"]["auto"]["forward"]["repeats"] == 1
    evaluation = saved["evaluation"]  # the evaluate path's throughput, per backend
    assert set(evaluation["images_per_second"]) == {"reference", "auto"}
    assert all(v > 0 for v in evaluation["images_per_second"].values())
    assert "## Evaluation throughput" in (tmp_path / files[1]).read_text()
    assert set(saved["training"]["images_per_second"]) == {"reference", "auto"}  # training steps per backend
    ops = {(r["op"], r["label"]) for r in saved["ops"]}
    # Three ops x four branches, the SegFormer head's two resizes, HLG's local attention in stages 1-3 and
    # global attention in all four.
    assert len(ops) == 21 and sum(op.startswith("hlg") for op, _ in ops) == 7
    for r in saved["ops"]:
        assert "reference" in r["latency"] and all(e < 1e-4 for e in r["max_abs_error"].values())
        assert {e["forward"]["repeats"] for e in r["latency"].values()} == {2}
        if r["op"] == "cswin_attention":  # FLOP rate: 2 * multiply-adds / forward time
            s, e = r["shape"], r["latency"]["reference"]
            macs = 2 * s["B"] * s["H"] * s["W"] * (s["stripe_width"] * (s["W"] + s["H"])) * s["C"] // 2
            if s["H"] % s["stripe_width"] == 0 and s["W"] % s["stripe_width"] == 0:
                assert e["forward_gflops"] == pytest.approx(2 * macs / (e["forward"]["median_ms"] * 1e6))
    # The chart: a bar per contender and measurement (b1's forward; each op row's forward and fwd+bwd, C++).
    bars = [e for e in ElementTree.parse(tmp_path / files[2]).iter() if e.get("class") == "bar"]
    assert len(bars) == len(model["latency"]) - 1 + 2 * len(ops)  # every contender but the reference
    reference, auto = (model["latency"][b]["forward"]["median_ms"] for b in ("reference", "auto"))
    assert bars[0].find("{http://www.w3.org/2000/svg}title").text == f"auto: {reference / auto:.2f}x"
    out = capsys.readouterr()
    assert "| hrvit_b1 |" in out.out and "[1/" in out.err  # the table, and progress while running
    assert report["models"][0]["model"] == "hrvit_b1"
    assert isinstance(saved["warnings"], list)


def _benchmark_module(name):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_benchmark_report_goes_to_an_ignored_folder_by_default():
    """The main job never overwrites the committed figures unless asked to (--out benchmarks/results)."""
    run = _benchmark_module("run")
    default = run.parse_args([]).out
    assert default == ROOT / "benchmarks" / "out"
    if (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", str(default / "cpu-2core.json")], cwd=ROOT)
        assert ignored.returncode == 0, "benchmarks/out is not ignored by git"


def _timing(median, iqr):
    return {"median_ms": median, "iqr_ms": iqr, "min_ms": median, "max_ms": median, "repeats": 5}


def test_noisy_rows_and_a_loaded_machine_are_flagged():
    harness = _benchmark_module("harness")
    clear = {"reference": {"forward": _timing(100, 2)}, "auto": {"forward": _timing(50, 1)}}
    # The reported case: a 5.34x speedup whose interquartile range is as large as its median.
    noisy = {"reference": {"forward": _timing(534, 534)}, "auto": {"forward": _timing(100, 5)}}
    assert not harness.noisy(clear, "forward", "auto") and harness.noisy(noisy, "forward", "auto")
    op = {"op": "cswin_attention", "label": "b1 branch 0",
          "latency": {"reference": {"forward": _timing(10, 0.1), "forward_share_of_matmul_rate": 1.28}}}
    report = {"models": [{"model": "m1", "latency": clear}, {"model": "m2", "latency": noisy}], "ops": [op]}
    warnings = harness.noise_warnings(report, [350.0, 180.0], load_before=1.7)
    assert len(warnings) == 4
    busy, drift, rate, spread = warnings
    assert "load average 1.70 per core" in busy and "350 to 180 GFLOP/s" in drift
    assert "128%" in rate and "1 speedups" in spread and "m2 [auto] forward" in spread
    assert harness.noise_warnings({"models": [{"model": "m1", "latency": clear}], "ops": []},
                                  [350.0, 340.0], load_before=0.1) == []
    run = _benchmark_module("run")
    assert run._ratio({"auto": 5.34}, noisy, "forward", "auto") == "~5.34x"
    assert run._ratio({"auto": 2.0}, clear, "forward", "auto") == "2.00x"


def test_op_cases_cover_non_square_inputs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from cases import hrvit_stage_cases, parse_image_size
    finally:
        sys.path.pop(0)
    assert parse_image_size("512") == (512, 512) and parse_image_size("1024x2048") == (1024, 2048)
    for bad in ("", "1024x", "0x5", "2x3x4", "ax3"):
        with pytest.raises(ValueError, match="image size"):
            parse_image_size(bad)
    shapes = [c.shape for c in hrvit_stage_cases("b1", 1024, 2048, 16) if c.op == "cswin_attention"]
    assert [(s["H"], s["W"]) for s in shapes] == [(256, 512), (128, 256), (64, 128), (32, 64)]
    # the longest stripes at 1024x2048: 7 rows of 128 tokens (896) at branch 2
    assert max(s["stripe_width"] * max(s["H"], s["W"]) for s in shapes) == 7 * 128

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without CUDA")
def test_gpu_session_script_exits_cleanly_without_cuda(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device here" in (tmp_path / "out" / "summary.txt").read_text()


def test_gpu_checks_run_on_cpu():
    """The GPU session's memcheck cases, on CPU (Triton in its interpreter): the script itself works."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py"), "memcheck", "--device",
                             "cpu"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TRITON_INTERPRET": "1"})
    assert result.returncode == 0 and "memcheck cases ran" in result.stdout, result.stderr[-2000:]
