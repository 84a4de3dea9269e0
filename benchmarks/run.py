"""hrvit_kernels benchmark report: parameters and multiply-adds beside the published figures, and the
latency of every available backend for whole models and for each op at its stage shapes.

    python benchmarks/run.py                      # default: b1/b2/b3 SegFormer at 512, batch 1, CPU
    python benchmarks/run.py --models hrvit_b1_segformer --size 1024 --batch 2 --device cuda --dtype float16

Writes <out>/<device>.json (with machine, versions, date) and <out>/<device>.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hrvit_kernels as hk  # noqa: E402
from cases import DEFAULT_MODELS, OpCase, atm_cases, hrvit_stage_cases  # noqa: E402
from harness import Progress, device_slug, environment, measure  # noqa: E402
from hrvit_kernels.flops import count_macs, count_params  # noqa: E402
from hrvit_kernels.models.published import PUBLISHED  # noqa: E402
from hrvit_kernels.ops import _dispatch  # noqa: E402
from hrvit_kernels.ops.attention_to_mask import api as atm_api  # noqa: E402
from hrvit_kernels.ops.cswin_attention import api as cswin_api  # noqa: E402
from hrvit_kernels.ops.mixcfn import api as mix_api  # noqa: E402

OPS = {"cswin_attention": cswin_api, "mix_conv_gelu": mix_api, "attention_to_mask": atm_api}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=DEFAULT_MODELS, help="registered model names (none: skip)")
    p.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backends", nargs="*", default=None,
                   help="backends to time (default: reference and every other one that can run here)")
    p.add_argument("--op-variants", nargs="*", default=["b1"], choices=["b1", "b2", "b3"],
                   help="HRViT variants whose stage shapes the op rows use (none: skip op rows)")
    p.add_argument("--no-atm", action="store_true", help="skip the attention-to-mask op rows")
    p.add_argument("--train", action="store_true", help="also time forward+backward (training step)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-macs", action="store_true", help="skip counting multiply-adds")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


def model_backends(requested, device) -> list[str]:
    if requested:
        return requested
    # Whole models mix ops; "auto" uses every fused kernel that applies, "reference" none.
    return ["reference", "auto"]


def op_backends(op: str, requested, tensors) -> list[str]:
    available = OPS[op].AVAILABLE
    names = requested or [b for b in available if b != "reference"] + ["reference"]
    return [b for b in names if b in available and available[b](tensors) is None]


def make_op_inputs(case: OpCase, device, dtype, requires_grad: bool):
    s = case.shape
    r = lambda *shape: torch.randn(*shape, device=device, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    if case.op == "cswin_attention":
        N = s["H"] * s["W"]
        q, v = r(s["B"], N, s["C"]), r(s["B"], N, s["C"])
        call = lambda backend: hk.cswin_attention(q, v, v, (s["H"], s["W"]), s["stripe_width"],  # noqa: E731
                                                  s["head_dim"], backend=backend)
        return (q, v), call
    if case.op == "mix_conv_gelu":
        R, split = s["R"], s["R"] // 2
        x = r(s["B"], s["H"] * s["W"], R)
        params = (r(split, 1, 3, 3), r(split), r(R - split, 1, 5, 5), r(R - split))
        call = lambda backend: hk.mix_conv_gelu(x, (s["H"], s["W"]), *params, backend=backend)  # noqa: E731
        return (x, *params), call
    q, k, v = r(s["B"], s["Q"], s["C"]), r(s["B"], s["L"], s["C"]), r(s["B"], s["L"], s["C"])
    call = lambda backend: hk.attention_to_mask(q, k, v, s["heads"], backend=backend)  # noqa: E731
    return (q, k, v), call


def backward_of(call, inputs):
    def step(backend):
        outs = call(backend)
        outs = outs if isinstance(outs, tuple) else (outs,)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        for t in inputs:
            t.grad = None
    return step


def release_style_gmacs(name: str, size: int) -> float:
    """Multiply-adds (G) of one size x size image, counted as the release was measured: fvcore rules,
    reference math (padded stripes included), segmentors up to the decode head's output."""
    model = hk.create_model(name).eval()
    with hk.use_backend("reference"):
        macs = count_macs(model, torch.randn(1, 3, size, size), getattr(model, "encode_decode", None))
    return macs.total / 1e9


def bench_model(name, args, device, dtype, progress):
    model = hk.create_model(name).to(device=device, dtype=dtype).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device, dtype=dtype)
    row = {"model": name, "size": args.size, "batch": args.batch, "params": count_params(model),
           "published": PUBLISHED.get(name, {}), "latency": {}}
    if not args.no_macs:
        row["gmacs"] = release_style_gmacs(name, args.size)
        progress.step(f"{name}: {row['params'] / 1e6:.2f} M params, {row['gmacs']:.2f} GMACs")
    for backend in model_backends(args.backends, device):
        with hk.use_backend(backend):
            with torch.no_grad():
                row["latency"][backend] = {"forward": measure(lambda: model(x), device, args.warmup, args.repeats)}
            if args.train:
                model.train()
                row["latency"][backend]["train_step"] = measure(
                    lambda: model(x).float().mean().backward(), device, args.warmup, args.repeats)
                model.eval()
        progress.step(f"{name} [{backend}] forward {row['latency'][backend]['forward']['median_ms']:.1f} ms")
    return row


def bench_op(case: OpCase, args, device, dtype, progress):
    inputs, call = make_op_inputs(case, device, dtype, requires_grad=True)
    row = {"op": case.op, "label": case.label, "shape": case.shape, "latency": {}, "max_abs_error": {}}
    with torch.no_grad():
        expected = call("reference")
    expected = expected if isinstance(expected, tuple) else (expected,)
    for backend in op_backends(case.op, args.backends, inputs):
        with torch.no_grad():
            out = call(backend)
            out = out if isinstance(out, tuple) else (out,)
            row["max_abs_error"][backend] = max((a.float() - e.float()).abs().max().item()
                                                for a, e in zip(out, expected))
            fwd = measure(lambda: call(backend), device, args.warmup, args.repeats)
        fwd_bwd = measure(lambda: backward_of(call, inputs)(backend), device, args.warmup, args.repeats)
        row["latency"][backend] = {"forward": fwd, "forward_backward": fwd_bwd}
        progress.step(f"{case.describe()} [{backend}] fwd {fwd['median_ms']:.2f} ms, "
                      f"fwd+bwd {fwd_bwd['median_ms']:.2f} ms")
    return row


def speedups(latency: dict, key: str) -> dict:
    base = latency.get("reference", {}).get(key)
    if not base:
        return {}
    return {b: base["median_ms"] / v[key]["median_ms"] for b, v in latency.items() if key in v}


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# hrvit_kernels benchmark — {env.get('gpu') or env['processor']} ({env['device']})", "",
             f"{env['date']}; torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
             f"{env['torch_threads']} threads; dtype {report['config']['dtype']}.", ""]
    if report["models"]:
        lines += ["## Models", "",
                  "| model | input | params | GMACs (ours) | GMACs (release, fvcore) | paper params / GFLOPs |",
                  "|---|---|---|---|---|---|"]
        for r in report["models"]:
            p = r["published"]
            paper = f"{p['paper_params_m']} M / {p['paper_gflops']}" if "paper_params_m" in p else "—"
            release = f"{p['release_gmacs']:.2f}" if "release_gmacs" in p and r["size"] == p["size"] else "—"
            lines.append(f"| {r['model']} | {r['batch']}x3x{r['size']}x{r['size']} | {r['params']:,} | "
                         f"{r.get('gmacs', float('nan')):.2f} | {release} | {paper} |")
        lines += ["", "| model | backend | forward ms (median, IQR) | speedup | train step ms | speedup |",
                  "|---|---|---|---|---|---|"]
        for r in report["models"]:
            fs, ts = speedups(r["latency"], "forward"), speedups(r["latency"], "train_step")
            for b, v in r["latency"].items():
                train = v.get("train_step")
                lines.append(f"| {r['model']} | {b} | {v['forward']['median_ms']:.1f} ± {v['forward']['iqr_ms']:.1f}"
                             f" | {fs.get(b, float('nan')):.2f}x | "
                             + (f"{train['median_ms']:.1f} | {ts[b]:.2f}x |" if train else "— | — |"))
    if report["ops"]:
        lines += ["", "## Ops", "", "| op | shape | backend | forward ms | speedup | fwd+bwd ms | speedup | max abs err |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["ops"]:
            fs, bs = speedups(r["latency"], "forward"), speedups(r["latency"], "forward_backward")
            shape = r["label"] + " " + ",".join(f"{k}={v}" for k, v in r["shape"].items())
            for b, v in r["latency"].items():
                lines.append(f"| {r['op']} | {shape} | {b} | {v['forward']['median_ms']:.2f} | {fs[b]:.2f}x | "
                             f"{v['forward_backward']['median_ms']:.2f} | {bs[b]:.2f}x | {r['max_abs_error'][b]:.1e} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    op_cases = [c for v in args.op_variants for c in hrvit_stage_cases(v, args.size, args.batch)]
    if not args.no_atm and args.op_variants:
        op_cases += atm_cases(args.batch)
    backends_per_model = len(model_backends(args.backends, device))
    progress = Progress(len(args.models) * (backends_per_model + (not args.no_macs)) + 2 * len(op_cases))
    report = {"environment": environment(device), "config": {**vars(args), "out": str(args.out)},
              "command": "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "models": [], "ops": []}
    for name in args.models:
        report["models"].append(bench_model(name, args, device, dtype, progress))
    for case in op_cases:
        report["ops"].append(bench_op(case, args, device, dtype, progress))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / device_slug(report["environment"])
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    markdown = to_markdown(report)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
