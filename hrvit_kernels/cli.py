"""The command line: ``hrvit-kernels models | segment | evaluate | train`` (also ``python -m hrvit_kernels``;
``torchrun ... -m hrvit_kernels.train`` for training on many processes)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path


def _models(args) -> int:
    from hrvit_kernels.models.cards import CARDS

    print(f"{'model':36} {'params':>13} {'GMACs':>8} {'input':>5} {'test':>12} {'paper':>12}")
    for name, card in CARDS.items():
        params = f"{card.params:,}" if card.params else "-"
        test = f"{card.test_mode} {card.test_crop}/{card.test_stride}" if card.test_mode == "slide" else (
            card.test_mode or "-")
        paper = (f"{card.paper_miou} mIoU" if card.paper_miou else
                 f"{card.paper_top1} top-1" if card.paper_top1 else "-")
        gmacs = f"{card.release_gmacs:.2f}" if card.release_gmacs else "-"
        print(f"{name:36} {params:>13} {gmacs:>8} {card.input_size:>5} {test:>12} {paper:>12}")
    return 0


def _aug(value: str | None) -> tuple[bool, tuple | None]:
    from hrvit_kernels.inference import MS_RATIOS

    parts = {p for p in (value or "").split(",") if p}
    unknown = parts - {"flip", "ms"}
    if unknown:
        raise SystemExit(f"--aug: unknown augmentation(s) {', '.join(sorted(unknown))}; accepted: flip, ms")
    return "flip" in parts, (MS_RATIOS if "ms" in parts else None)


def _build(name: str, checkpoint, num_classes: int | None):
    from hrvit_kernels.models import create_model, model_card

    overrides = {}
    if num_classes is not None and num_classes != model_card(name).num_classes:
        overrides["num_classes"] = num_classes
    if checkpoint is None:
        print(f"note: no --checkpoint: {name} runs with random weights", file=sys.stderr)
    return create_model(name, checkpoint=checkpoint, **overrides)


def _segment(args) -> int:
    from hrvit_kernels.data import classes_of
    from hrvit_kernels.inference import Segmenter, colorize, overlay, read_image, save_png, inference_config
    from hrvit_kernels.models import model_card

    card = model_card(args.model)
    names, palette = classes_of(args.dataset or card.dataset)
    model = _build(args.model, args.checkpoint, len(names))
    flip, scales = _aug(args.aug)
    segmenter = Segmenter(model, inference_config(args.model), device=args.device, amp=args.amp)
    out = Path(args.out)
    for path in args.images:
        image = read_image(path)
        labels = segmenter.segment(image, mode=args.mode, flip=flip, scales=scales)
        stem = Path(path).stem
        save_png(labels.cpu().numpy().astype("uint8"), out / f"{stem}_labels.png")
        save_png(colorize(labels, palette), out / f"{stem}_color.png")
        save_png(overlay(image, labels, palette, names), out / f"{stem}_overlay.png")
        print(f"{path}: {out / (stem + '_labels.png')}, _color.png, _overlay.png")
    return 0


def _evaluate(args) -> int:
    from hrvit_kernels._distributed import init_from_environment
    from hrvit_kernels._files import write_json_atomically
    from hrvit_kernels.data import SegmentationDataset
    from hrvit_kernels.inference import inference_config
    from hrvit_kernels.inference.evaluate import evaluate

    rank, _ = init_from_environment()  # under torchrun the processes share the images
    dataset = SegmentationDataset(args.dataset, args.data_root, args.split)
    model = _build(args.model, args.checkpoint, dataset.num_classes)
    flip, scales = _aug(args.aug)
    results = evaluate(model, inference_config(args.model), dataset, mode=args.mode, flip=flip, scales=scales,
                       device=args.device, amp=args.amp, workers=args.workers)
    if rank != 0:
        return 0
    print(f"\n{'class':24} {'IoU':>7} {'Acc':>7}")
    for name, row in results["per_class"].items():
        cells = [f"{100 * v:7.2f}" if not math.isnan(v) else f"{'nan':>7}" for v in (row["IoU"], row["Acc"])]
        print(f"{name:24} {cells[0]} {cells[1]}")
    print(f"\nmIoU {100 * results['mIoU']:.2f}  mAcc {100 * results['mAcc']:.2f}  aAcc {100 * results['aAcc']:.2f}  "
          f"({results['images']} images, {results['images_per_second']:.2f} images/s)")
    if args.out:
        write_json_atomically(Path(args.out), dict(results, model=args.model, dataset=args.dataset,
                                                   checkpoint=args.checkpoint, mode=args.mode, aug=args.aug))
        print(f"written to {args.out}")
    return 0


def _parse_override(text: str):
    """key=value with value read as JSON where it parses (numbers, true/false, null, lists), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"override {text!r}: write it as key=value, e.g. iterations=2000")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _train(args) -> int:
    from hrvit_kernels.models import model_card
    from hrvit_kernels.train import default_classification_recipe, default_recipe, train, train_classifier

    overrides = dict(_parse_override(o) for o in args.overrides)
    for key in ("betas", "scale"):
        if isinstance(overrides.get(key), list):
            overrides[key] = tuple(overrides[key])
    classifier = model_card(args.model).task == "classification"
    recipe = (default_classification_recipe if classifier else default_recipe)(args.model).replace(**overrides)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print("recipe:", json.dumps(vars(recipe), indent=1, default=str))
    last = (train_classifier if classifier else train)(recipe, args.data_root, args.work_dir,
                                                       resume=not args.no_resume)
    if rank == 0:
        print("finished:", json.dumps(last))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hrvit-kernels", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="the registered models with params, GMACs, input size, test mode, paper mIoU")

    def common(q):
        q.add_argument("--model", required=True, help="a registered segmentor (hrvit-kernels models)")
        q.add_argument("--checkpoint", help="weights to load (weights-only unpickling)")
        q.add_argument("--mode", choices=["whole", "slide"], help="default: the release's test mode")
        q.add_argument("--aug", help="test-time augmentation: flip, ms or flip,ms (multi-scale 0.5-1.75)")
        q.add_argument("--device", help="default: cuda if available, else cpu")
        q.add_argument("--amp", choices=["bf16", "fp16", "none"],
                       help="autocast dtype (default: bf16 on CUDA, none on CPU; bf16 on a CPU with AVX-512-BF16 or "
                            "AMX is faster, about 7e-3 relative error on the logits)")

    seg = sub.add_parser("segment", help="label, colour and overlay PNGs of images")
    seg.add_argument("images", nargs="+")
    common(seg)
    seg.add_argument("--dataset", help="class names and colours (default: the model's dataset)")
    seg.add_argument("--out", required=True, help="output folder")
    ev = sub.add_parser("evaluate", help="mIoU on a dataset folder")
    common(ev)
    ev.add_argument("--dataset", required=True, choices=["ade20k", "cityscapes", "pascal_context", "coco_stuff"])
    ev.add_argument("--data-root", required=True)
    ev.add_argument("--split", default="val", choices=["train", "val"])
    ev.add_argument("--workers", type=int, default=2, help="image-reading processes (default 2)")
    ev.add_argument("--out", help="also write the results as JSON here")
    _train_arguments(sub.add_parser("train", help=TRAIN_HELP))
    return p


TRAIN_HELP = ("train a segmentor with its release's recipe, or pretrain a classifier on an ImageNet-layout folder "
              "(torchrun for many processes)")


def _train_arguments(q: argparse.ArgumentParser) -> None:
    q.add_argument("model", help="a registered segmentor or classifier; its release's recipe is the default")
    q.add_argument("--data-root", required=True,
                   help="the dataset folder (the recipe's dataset layout; classifiers: train/<class>/*, val/<class>/*)")
    q.add_argument("--work-dir", required=True, help="configuration, logs and checkpoints go here")
    q.add_argument("--no-resume", action="store_true", help="start over even if the work dir has checkpoints")
    q.add_argument("overrides", nargs="*", help="recipe fields as key=value, e.g. iterations=2000 lr=1e-4")


def main(argv=None) -> int:
    import torch

    from hrvit_kernels._distributed import local_device, shutdown

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # key=value overrides may follow the options: parse positionals intermixed
        train_parser = argparse.ArgumentParser(prog="hrvit-kernels train", description=TRAIN_HELP)
        _train_arguments(train_parser)
        args = train_parser.parse_intermixed_args(argv[1:])
        args.command = "train"
    else:
        args = parser().parse_args(argv)
    if args.command not in ("models", "train"):
        args.device = args.device or str(local_device())
        if args.amp is None:
            args.amp = "bf16" if torch.device(args.device).type == "cuda" else "none"
        args.amp = None if args.amp == "none" else args.amp
    status = {"models": _models, "segment": _segment, "evaluate": _evaluate, "train": _train}[args.command](args)
    shutdown()  # under torchrun (train, evaluate): the group goes before the interpreter does
    return status


if __name__ == "__main__":
    sys.exit(main())
