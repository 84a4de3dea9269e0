"""The benchmark entry point on a tiny configuration, and facts about the compiled extension."""
import json
import re
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

import hrvit_kernels as hk

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_run_writes_json_and_markdown(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run
    finally:
        sys.path.pop(0)
    report = run.main(["--models", "hrvit_b1", "--size", "64", "--repeats", "1", "--op-repeats", "2",
                       "--warmup", "0", "--op-variants", "b1", "--no-atm", "--out", str(tmp_path)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "md", "svg"]
    saved = json.loads((tmp_path / files[0]).read_text())
    assert saved["environment"]["torch"] and saved["environment"]["date"]
    (model,) = saved["models"]
    assert model["params"] == 7_758_008 and model["gmacs"] > 0
    assert set(model["latency"]) == {"reference", "auto"}
    assert model["latency"]["auto"]["forward"]["repeats"] == 1
    ops = {(r["op"], r["label"]) for r in saved["ops"]}
    assert len(ops) == 10  # two ops x four branches, and the SegFormer head's two resizes
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
    assert len(bars) == 1 + 2 * len(ops)
    reference, auto = (model["latency"][b]["forward"]["median_ms"] for b in ("reference", "auto"))
    assert bars[0].find("{http://www.w3.org/2000/svg}title").text == f"auto: {reference / auto:.2f}x"
    out = capsys.readouterr()
    assert "| hrvit_b1 |" in out.out and "[1/" in out.err  # the table, and progress while running
    assert report["models"][0]["model"] == "hrvit_b1"



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

def test_csrc_includes_no_torch_headers():
    sources = list((ROOT / "csrc").rglob("*.cpp")) + list((ROOT / "csrc").rglob("*.h"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"#include\s*[<\"](torch|ATen|c10)/", text), path


@pytest.mark.skipif(not hk.HAS_EXT, reason="hrvit_kernels._C is not built (pip install -e .)")
def test_extension_is_built_with_openmp():
    from hrvit_kernels import _C

    assert _C.has_openmp
