"""hrvit_kernels benchmark report: parameters and multiply-adds beside the published figures, and the
latency of every available backend for whole models and for each op at its stage shapes.

    python benchmarks/run.py                      # default: b1/b2/b3 SegFormer at 512, batch 1, CPU
    python benchmarks/run.py --models hrvit_b1_segformer --size 1024 --batch 2 --device cuda --dtype float16

Writes <out>/<device>.{json,md,svg} (with machine, versions, date), by default to benchmarks/out/, which
git ignores; the committed figures in benchmarks/results/ are written only with --out benchmarks/results.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hrvit_kernels as hk  # noqa: E402
from cases import (DEFAULT_MODELS, OpCase, atm_cases, hlg_stage_cases, hrvit_stage_cases, parse_image_size,  # noqa: E402
                   segformer_resize_cases)
from harness import (Progress, device_slug, environment, load_per_core, measure, measure_interleaved,  # noqa: E402
                     noise_warnings, noisy, speedups)
from hrvit_kernels.flops import count_macs, count_params  # noqa: E402
from hrvit_kernels.models.cards import CARDS  # noqa: E402
from hrvit_kernels._files import write_atomically  # noqa: E402
from hrvit_kernels.flops import op_flops  # noqa: E402
from hrvit_kernels.testing import on_backend  # noqa: E402
from deploy_baselines import deploy_contenders  # noqa: E402
from op_table import OPS  # noqa: E402
from plot import speedup_svg  # noqa: E402

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=DEFAULT_MODELS,
                   help="registered model names, NAME@SIZE for another input side than --size (none: skip)")
    p.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backends", nargs="*", default=None,
                   help="backends to time (default: reference and every other one that can run here)")
    p.add_argument("--op-variants", nargs="*", default=["b1"], choices=["b1", "b2", "b3"],
                   help="HRViT variants whose stage shapes the op rows use (none: skip op rows)")
    p.add_argument("--op-sizes", nargs="+", type=parse_image_size, default=None, metavar="HxW",
                   help="input sizes whose stage shapes the op rows use, e.g. 512 1024x2048 "
                        "(default: --size)")
    p.add_argument("--no-atm", action="store_true", help="skip the attention-to-mask op rows")
    p.add_argument("--hlg-variants", nargs="*", default=["small"], choices=["tiny", "small", "medium", "large"],
                   help="HLG variants whose attention shapes the op rows use (none: skip)")
    p.add_argument("--baselines", nargs="*", default=None, choices=["compile", "sdpa", "flex"],
                   help="baselines for the op rows (default: all on CUDA, none on CPU where compiling "
                        "them takes minutes)")
    p.add_argument("--train", action="store_true", help="also time forward+backward (training step)")
    p.add_argument("--memory-batch", type=int, default=2,
                   help="batch of the training step whose peak resident memory --train measures (CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of each model (default 3)")
    p.add_argument("--op-repeats", type=int, default=15,
                   help="timed rounds of each op row (default 15: ops take milliseconds, and their medians "
                        "need more rounds than the models' to settle on a noisy machine)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-macs", action="store_true", help="skip counting multiply-adds")
    p.add_argument("--eval-model", default="hrvit_b1_segformer",
                   help="segmentor of the evaluation-throughput row (default hrvit_b1_segformer)")
    p.add_argument("--no-deploy", action="store_true",
                   help="skip the ONNX Runtime / OpenVINO rows of the HRViT segmentors (CPU, fp32 runs)")
    p.add_argument("--train-batch", type=int, default=2,
                   help="batch of the training-throughput row: full training steps of --eval-model at its recipe's "
                        "crop (0: skip)")
    p.add_argument("--eval-images", type=int, default=4,
                   help="synthetic 512 x 683 ADE20K-layout images of the evaluation-throughput row (0: skip)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="CPU: keep freed memory mapped, as the package's Segmenter does (hrvit_kernels."
                        "keep_freed_memory), for every contender of the run; by default glibc's malloc hands large "
                        "blocks back and each pass faults its activations in again")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                   help="folder of the report (default benchmarks/out, ignored by git; the committed "
                        "figures: benchmarks/results)")
    return p.parse_args(argv)


def planned_impls_per_op(args) -> int:
    """The progress total's estimate of an op's rows: a kernel backend, the reference and each baseline (an op
    may have more backends, Triton and C++, or lack a baseline; bench_op corrects the total)."""
    return 2 + len(args.baselines)


def model_backends(requested) -> list[str]:
    if requested:
        return requested
    # Whole models mix ops; "auto" uses every fused kernel that applies, "reference" none.
    return ["reference", "auto"]


def op_backends(op: str, requested, tensors) -> list[str]:
    available = OPS[op].available
    # On CPU tensors Triton runs only in its interpreter, a test tool far slower than any backend:
    # timed only when asked for by name.
    default = [b for b in available if b != "reference" and (b != "triton" or tensors[0].is_cuda)]
    names = requested or default + ["reference"]
    return [b for b in names if b in available and available[b](tensors) is None]


def make_op_inputs(case: OpCase, device, dtype, requires_grad: bool):
    """(inputs, call): call(impl) runs the op on the inputs with backend ``impl`` (a name) or with a
    baseline callable of the op's signature."""
    r = lambda *shape: torch.randn(*shape, device=device, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    op = OPS[case.op]
    inputs, args = op.make_inputs(case.shape, r)
    return inputs, lambda impl: op.function(*args, backend=impl) if isinstance(impl, str) else impl(*args)


def forward_flops(case: OpCase, call) -> int | None:
    """FLOPs of the forward as the op's custom op declares them (real tokens only), read from PyTorch's
    FLOP counter on the default backend; None for ops whose time is memory traffic, or where no custom
    op runs (the extension is not built)."""
    if not OPS[case.op].compute_bound:
        return None
    with torch.no_grad():
        return op_flops(lambda: call("auto")) or None


def matmul_gflops(device, dtype) -> float:
    """Measured rate of a large square matrix product in this dtype, the compute roofline for the ops:
    its fastest round, since other load can only slow a round down."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    t = measure(lambda: a @ b, device, warmup=2, repeats=5)
    return 2 * n**3 / (t["min_ms"] * 1e-3) / 1e9


def copy_bandwidth_gbs(device) -> float | None:
    """Measured device copy bandwidth (bytes read + written per second), the roofline for the ops."""
    if device.type != "cuda":
        return None
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    t = measure(lambda: y.copy_(x), device, warmup=3, repeats=20)
    return 2 * x.numel() / (t["median_ms"] * 1e-3) / 1e9


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
    with on_backend(model, "reference"):
        macs = count_macs(model, torch.randn(1, 3, size, size), getattr(model, "encode_decode", None))
    return macs.total / 1e9


PEAK_RSS_SCRIPT = """
import resource, sys, torch, hrvit_kernels as hk
from hrvit_kernels.testing import on_backend
name, backend, size, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = hk.create_model(name).train()
x = torch.randn(batch, 3, size, size)
with on_backend(model, backend):
    out = model(x)
    (out["pred"] if isinstance(out, dict) else out).float().mean().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main_output(out):
    """The segmentation logits of a training-mode forward (SegViT and SETR return a dict)."""
    return out["pred"] if isinstance(out, dict) else out


def _bf16_autocast(model, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x)


def _first_output(out) -> torch.Tensor:
    """The first output tensor, as float: segmentation logits, a backbone's first map, or an exported graph's
    first output (a numpy array)."""
    out = main_output(out)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return torch.as_tensor(out).float()


def peak_rss_mib(name: str, backend: str, size: int, batch: int) -> float:
    """Peak resident memory of one training step, in a fresh process (CPU only)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, name, backend, str(size), str(batch)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _published(name: str) -> dict:
    """The card's published figures of a model (none for a model without a card)."""
    card = CARDS.get(name)
    if card is None:
        return {}
    figures = dict(size=card.input_size, params=card.params, release_gmacs=card.release_gmacs,
                   paper_params_m=card.paper_params_m, paper_gflops=card.paper_gflops, paper_miou=card.paper_miou)
    return {k: v for k, v in figures.items() if v is not None}


def bench_model(spec, args, device, dtype, progress):
    name, _, size = spec.partition("@")
    size = int(size) if size else args.size
    model = hk.create_model(name).to(device=device, dtype=dtype).eval()
    x = torch.randn(args.batch, 3, size, size, device=device, dtype=dtype)
    row = {"model": name, "size": size, "batch": args.batch, "params": count_params(model),
           "published": _published(name), "latency": {}}
    if not args.no_macs:  # at the published input size, to compare with the published figure
        row["macs_size"] = CARDS[name].input_size if name in CARDS else args.size
        row["gmacs"] = release_style_gmacs(name, row["macs_size"])
        progress.step(f"{name}: {row['params'] / 1e6:.2f} M params, {row['gmacs']:.2f} GMACs at {row['macs_size']}")
    backends = model_backends(args.backends)

    def under(backend, fn):
        def run():
            with on_backend(model, backend):
                return fn()
        return run

    contenders = {b: under(b, lambda: model(x)) for b in backends}
    keep_alive = None
    if not args.no_deploy and device.type == "cpu" and dtype == torch.float32 and name.startswith("hrvit"):
        deploy, row["notes"], keep_alive = deploy_contenders(model, x, torch.get_num_threads())
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # the package's own bf16 path beside OpenVINO's
            for b in backends:
                contenders[f"{b} bf16"] = under(b, lambda: _bf16_autocast(model, x))
            row["notes"].append("bf16 rows: the fp32 model under torch.autocast('cpu', dtype=torch.bfloat16)")
        contenders.update(deploy)
    progress.expect(len(backends), len(contenders))  # bf16 and deployment rows join the planned backends
    with torch.no_grad():
        forward = measure_interleaved(contenders, device, args.warmup, args.repeats)
        expected = _first_output(under("reference", lambda: model(x))())
        for label, fn in contenders.items():  # the first output: the logits, or a backbone's stride-4 map
            out = _first_output(fn())
            forward[label]["max_rel_error"] = ((out - expected).norm() / expected.norm()).item()
    del keep_alive
    for backend in contenders:
        row["latency"][backend] = {"forward": forward[backend]}
        progress.step(f"{name} [{backend}] forward {forward[backend]['median_ms']:.1f} ms")
    if args.train:
        model.train()
        steps = measure_interleaved(
            {b: under(b, lambda: main_output(model(x)).float().mean().backward()) for b in backends},
            device, args.warmup, args.repeats)
        model.eval()
        for backend in backends:
            row["latency"][backend]["train_step"] = steps[backend]
            if device.type == "cpu":
                row["latency"][backend]["train_peak_rss_mib"] = peak_rss_mib(name, backend, size, args.memory_batch)
    return row


def bench_op(case: OpCase, args, device, dtype, progress, copy_gbs, matmul_rate):
    from baselines import baseline

    inputs, call = make_op_inputs(case, device, dtype, requires_grad=True)
    row = {"op": case.op, "label": case.label, "shape": case.shape, "latency": {}, "max_abs_error": {}}
    with torch.no_grad():
        expected = call("reference")
    expected = expected if isinstance(expected, tuple) else (expected,)
    impls = {b: b for b in op_backends(case.op, args.backends, inputs)}
    impls.update({f"baseline:{name}": baseline(case.op, name) for name in args.baselines
                  if baseline(case.op, name) is not None})
    progress.expect(planned_impls_per_op(args), len(impls))
    for label, impl in impls.items():
        with torch.no_grad():
            out = call(impl)
            out = out if isinstance(out, tuple) else (out,)
            row["max_abs_error"][label] = max((a.float() - e.float()).abs().max().item()
                                              for a, e in zip(out, expected))
    with torch.no_grad():
        fwd = measure_interleaved({label: functools.partial(call, impl) for label, impl in impls.items()},
                                  device, args.warmup, args.op_repeats)
    train_steps = {}
    for label, impl in impls.items():
        try:
            backward_of(call, inputs)(impl)
            train_steps[label] = functools.partial(backward_of(call, inputs), impl)
        except NotImplementedError as exc:  # flex_attention has no CPU backward
            row.setdefault("notes", {})[label] = f"no backward: {exc}"
    fwd_bwd = measure_interleaved(train_steps, device, args.warmup, args.op_repeats)
    flops = forward_flops(case, call)
    for label in impls:
        entry = {"forward": fwd[label]}
        if label in fwd_bwd:
            entry["forward_backward"] = fwd_bwd[label]
        if device.type == "cuda":
            if label in train_steps:  # one more fwd+bwd, alone, for its peak memory
                torch.cuda.reset_peak_memory_stats(device)
                train_steps[label]()
                torch.cuda.synchronize(device)
                entry["peak_memory_fwd_bwd_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            traffic = OPS[case.op].minimal_traffic(case.shape) * torch.finfo(dtype).bits // 8
            gbs = traffic / (fwd[label]["median_ms"] * 1e-3) / 1e9
            entry["forward_gbs"] = gbs
            entry["forward_share_of_copy_bandwidth"] = gbs / copy_gbs
        if flops:
            entry["forward_gflops"] = flops / (fwd[label]["median_ms"] * 1e-3) / 1e9
            entry["forward_share_of_matmul_rate"] = entry["forward_gflops"] / matmul_rate
        row["latency"][label] = entry
        progress.step(f"{case.describe()} [{label}] fwd {fwd[label]['median_ms']:.2f} ms"
                      + (f", fwd+bwd {fwd_bwd[label]['median_ms']:.2f} ms" if label in fwd_bwd else ""))
    return row


def bench_evaluation(args, device, progress) -> dict:
    """Images per second of the evaluate path (slide windows of 512 every 341, as the releases test
    ADE20K) on a synthetic ADE20K-layout set of 512 x 683 images, per backend, in interleaved rounds
    (the best round of each)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from hrvit_kernels.data import SegmentationDataset
    from hrvit_kernels.inference import inference_config
    from hrvit_kernels.inference.evaluate import evaluate

    rng = np.random.default_rng(0)
    amp = {"float16": "fp16", "bfloat16": "bf16"}.get(args.dtype)
    model = hk.create_model(args.eval_model, num_classes=150)
    config = inference_config(args.eval_model, mode="slide", crop=512, stride=341)
    row = {"model": args.eval_model, "images": args.eval_images, "size": [512, 683], "mode": "slide 512/341",
           "images_per_second": {}}
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.eval_images):
            for folder, array in (("images", rng.integers(0, 256, (512, 683, 3), dtype=np.uint8)),
                                  ("annotations", rng.integers(0, 151, (512, 683), dtype=np.uint8))):
                path = Path(root) / folder / "validation" / f"{i:04d}.{'jpg' if folder == 'images' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
        dataset = SegmentationDataset("ade20k", root)
        for _ in range(2):
            for backend in model_backends(args.backends):
                with on_backend(model, backend):
                    result = evaluate(model, config, dataset, device=device, amp=amp, workers=0, progress=False)
                best = max(row["images_per_second"].get(backend, 0.0), result["images_per_second"])
                row["images_per_second"][backend] = best
                progress.step(f"evaluate {args.eval_model} [{backend}] {result['images_per_second']:.2f} images/s")
    return row


def bench_training(args, device, progress) -> dict:
    """Images per second of a full training step (forward, the recipe's loss, backward, optimiser step) of
    --eval-model at its recipe's crop, per backend, timed in turns (fp32 on CPU; the run's dtype under
    autocast on CUDA)."""
    from hrvit_kernels.train import default_recipe
    from hrvit_kernels.train.loop import _criterion
    from hrvit_kernels.train.optim import make_optimizer

    recipe = default_recipe(args.eval_model)
    model = hk.create_model(args.eval_model).to(device).train()
    optimizer = make_optimizer(model, recipe)
    x = torch.randn(args.train_batch, 3, recipe.crop, recipe.crop, device=device)
    label = torch.randint(0, 150, (args.train_batch, recipe.crop, recipe.crop), device=device)
    amp = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(args.dtype) if device.type == "cuda" else None

    def step(backend):
        def run():
            with on_backend(model, backend), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                outputs = model(x)
            loss = sum(_criterion(recipe, outputs, model)(outputs, label).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return run

    backends = model_backends(args.backends)
    times = measure_interleaved({b: step(b) for b in backends}, device, 1, 2)
    row = {"model": args.eval_model, "crop": recipe.crop, "batch": args.train_batch, "images_per_second": {}}
    for backend in backends:
        row["images_per_second"][backend] = args.train_batch / (times[backend]["median_ms"] / 1e3)
        progress.step(f"train {args.eval_model} [{backend}] {row['images_per_second'][backend]:.2f} images/s")
    return row


def _throughput_table(title: str, caption: str, images_per_second: dict) -> list[str]:
    """A report section: images/s per backend and the speedup over the reference."""
    reference = images_per_second.get("reference")
    lines = ["", f"## {title}", "", caption, "", "| backend | images/s | speedup |", "|---|---|---|"]
    for backend, ips in images_per_second.items():
        lines.append(f"| {backend} | {ips:.2f} | {ips / reference:.2f}x |" if reference else
                     f"| {backend} | {ips:.2f} | — |")
    return lines


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# hrvit_kernels benchmark — {env.get('gpu') or env['processor']} ({env['device']})", "",
             f"{env['date']}; torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
             f"{env['torch_threads']} threads; dtype {report['config']['dtype']}"
             + "".join(f"; {k}={v}" for k, v in env.get("tuning_env", {}).items())
             + ("; freed memory kept mapped (hrvit_kernels.keep_freed_memory)" if env.get("kept_freed_memory") else "")
             + ".", ""]
    if report["models"]:
        lines += ["## Models", "",
                  "| model | params | GMACs (ours) | GMACs (release, fvcore) | paper params / GFLOPs |",
                  "|---|---|---|---|---|"]
        for r in report["models"]:
            p = r["published"]
            paper = (f"{p.get('paper_params_m', '—')} M / {p['paper_gflops']}" if "paper_gflops" in p else "—")
            release = f"{p['release_gmacs']:.2f}" if "release_gmacs" in p else "—"
            macs = f"{r['gmacs']:.2f} at {r['macs_size']}" if "gmacs" in r else "—"
            lines.append(f"| {r['model']} | {r['params']:,} | {macs} | {release} | {paper} |")
        lines += ["", f"Latency at batch {report['config']['batch']}, {report['config']['size']} x "
                  f"{report['config']['size']} (model@size: at that size):", "",
                  "| model | backend | forward ms (median, IQR) | speedup | rel. error | train step ms | speedup | "
                  f"peak RSS MiB (train step, batch {report['config']['memory_batch']}, fresh process) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["models"]:
            fs, ts = speedups(r["latency"], "forward"), speedups(r["latency"], "train_step")
            for b, v in r["latency"].items():
                train = v.get("train_step")
                rss = f"{v['train_peak_rss_mib']:.0f}" if "train_peak_rss_mib" in v else "—"
                error = f"{v['forward']['max_rel_error']:.1e}" if "max_rel_error" in v["forward"] else "—"
                model = r["model"] if r["size"] == report["config"]["size"] else f"{r['model']}@{r['size']}"
                lines.append(f"| {model} | {b} | {v['forward']['median_ms']:.1f} ± {v['forward']['iqr_ms']:.1f}"
                             f" | {_ratio(fs, r['latency'], 'forward', b)} | {error} | "
                             + (f"{train['median_ms']:.1f} | {_ratio(ts, r['latency'], 'train_step', b)} |"
                                if train else "— | — |") + f" {rss} |")
        notes = sorted({n for r in report["models"] for n in r.get("notes", [])})
        if notes:
            lines += ["", "rel. error: relative L2 distance of the forward output to the fp32 eager reference's. "
                      "Deployment contenders (ONNX Runtime, OpenVINO) run the model exported to ONNX from the release's "
                      "sequence of ops.", ""] + [f"- {n}" for n in notes]
    if report.get("training"):
        t = report["training"]
        lines += _throughput_table(
            "Training throughput", f"Full training steps of {t['model']} at {t['crop']} x {t['crop']}, batch "
            f"{t['batch']} (forward, the recipe's loss, backward, optimiser step; median of two interleaved rounds):",
            t["images_per_second"])
    if report.get("evaluation"):
        e = report["evaluation"]
        lines += _throughput_table(
            "Evaluation throughput", f"`hrvit-kernels evaluate` path on {e['images']} synthetic {e['size'][0]} x "
            f"{e['size'][1]} ADE20K-layout images, {e['mode']}, {e['model']} (best of two interleaved rounds):",
            e["images_per_second"])
    if report["ops"]:
        lines += ["", "## Ops", "", "Speedups are against the eager reference (the release-style sequence). "
                  "Rate: the forward's floating-point operations (real tokens only) / forward time, as a share of "
                  f"the measured rate of a large matrix product ({env['matmul_gflops']:.0f} GFLOP/s). "
                  + (f"Bandwidth: minimal traffic / forward time, as a share of the measured copy bandwidth "
                     f"({env['copy_bandwidth_gbs']:.0f} GB/s)." if env.get("copy_bandwidth_gbs") else ""), "",
                  "| op | shape | backend | forward ms | speedup | fwd+bwd ms | speedup | max abs err | fwd GFLOP/s (share) "
                  "| fwd GB/s (share) | peak MiB fwd+bwd |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["ops"]:
            fs, bs = speedups(r["latency"], "forward"), speedups(r["latency"], "forward_backward")
            shape = r["label"] + " " + ",".join(f"{k}={v}" for k, v in r["shape"].items())
            for b, v in r["latency"].items():
                gbs = (f"{v['forward_gbs']:.0f} ({v['forward_share_of_copy_bandwidth']:.0%})"
                       if "forward_gbs" in v else "—")
                rate = (f"{v['forward_gflops']:.0f} ({v['forward_share_of_matmul_rate']:.0%})"
                        if "forward_gflops" in v else "—")
                mem = f"{v['peak_memory_fwd_bwd_mib']:.0f}" if "peak_memory_fwd_bwd_mib" in v else "—"
                fb = (f"{v['forward_backward']['median_ms']:.2f} | {_ratio(bs, r['latency'], 'forward_backward', b)}"
                      if "forward_backward" in v else "— | —")
                lines.append(f"| {r['op']} | {shape} | {b} | {v['forward']['median_ms']:.2f} | "
                             f"{_ratio(fs, r['latency'], 'forward', b)} | "
                             f"{fb} | {r['max_abs_error'][b]:.1e} | {rate} | {gbs} | {mem} |")
    if report.get("warnings"):
        lines += ["", "## Warnings", "", *(f"- {w}" for w in report["warnings"])]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def _ratio(ratios: dict, latency: dict, key: str, contender: str) -> str:
    """A speedup cell; '~' marks one whose spread exceeds its effect."""
    if contender not in ratios:
        return "—"
    return f"{'~' if noisy(latency, key, contender) else ''}{ratios[contender]:.2f}x"


def main(argv=None) -> dict:
    args = parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.baselines is None:
        args.baselines = ["compile", "sdpa", "flex"] if device.type == "cuda" else ["compile"]
    op_sizes = args.op_sizes or [(args.size, args.size)]
    op_cases = [c for (h, w) in op_sizes for v in args.op_variants for c in hrvit_stage_cases(v, h, w, args.batch)]
    op_cases += [c for (h, w) in op_sizes for c in segformer_resize_cases(args.op_variants, h, w, args.batch)]
    if not args.no_atm and args.op_variants:
        op_cases += atm_cases(args.batch)
    op_cases += [c for (h, w) in op_sizes for v in args.hlg_variants for c in hlg_stage_cases(v, h, w, args.batch)]
    backends_per_model = len(model_backends(args.backends))
    progress = Progress(len(args.models) * (backends_per_model + (not args.no_macs))
                        + planned_impls_per_op(args) * len(op_cases)
                        + (2 * backends_per_model if args.eval_images else 0)
                        + (backends_per_model if args.train_batch else 0))
    load_before = load_per_core()
    # Every contender runs in this process, so the allocator setting applies to all of them alike.
    kept_freed_memory = device.type == "cpu" and args.keep_freed_memory and hk.keep_freed_memory()
    report = {"environment": {**environment(device), "kept_freed_memory": kept_freed_memory},
              "config": {**vars(args), "out": str(args.out)},
              "command": " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
              "models": [], "ops": []}
    for name in args.models:
        report["models"].append(bench_model(name, args, device, dtype, progress))
    report["environment"]["copy_bandwidth_gbs"] = copy_gbs = copy_bandwidth_gbs(device)
    matmul_rates = []
    if op_cases:
        matmul_rates.append(matmul_gflops(device, dtype))
        report["environment"]["matmul_gflops"] = matmul_rate = matmul_rates[0]
    for case in op_cases:
        report["ops"].append(bench_op(case, args, device, dtype, progress, copy_gbs, matmul_rate))
    if args.train_batch > 0:
        report["training"] = bench_training(args, device, progress)
    if args.eval_images > 0:
        report["evaluation"] = bench_evaluation(args, device, progress)
    if op_cases:
        matmul_rates.append(matmul_gflops(device, dtype))  # again at the end: a loaded start shows
    report["warnings"] = noise_warnings(report, matmul_rates, load_before)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / device_slug(report["environment"])
    markdown = to_markdown(report)
    write_atomically(stem.with_suffix(".json"), json.dumps(report, indent=1))
    write_atomically(stem.with_suffix(".md"), markdown)
    write_atomically(stem.with_suffix(".svg"), speedup_svg(report))
    print(markdown)
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {stem}.json, {stem}.md and {stem}.svg", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
