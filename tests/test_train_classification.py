"""Classifier pretraining on an ImageNet-layout folder with timm's components: the release's recipe, the
loss falls, exact resume with augmentation, Mixup and EMA (one process and two gloo processes), validation
counting every image once, per-sample seeding, the command line, and bad folders."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrvit_kernels.train import checkpoint_paths, default_classification_recipe, default_recipe, train_classifier
from hrvit_kernels.train.classification import SeededSamples
from torchrun import run_two_processes
from work_dirs import log_rows, losses

SCRIPT = Path(__file__).resolve().parent / "scripts" / "train_two_processes.py"
SMALL = dict(input_size=32, batch_size=4, workers=0, log_interval=1, warmup_epochs=0, cooldown_epochs=0)
PLAIN = dict(aa=None, reprob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0, color_jitter=0.0, scale=(0.9, 1.0),
             drop_rate=0.0, drop_path_rate=0.0)


def imagenet_folder(root: Path, per_class: int = 8, val: int = 2, classes: int = 2) -> Path:
    """train/<class>/*.JPEG and val/<class>/*.JPEG; class c's images are saturated in colour channel c."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val)):
        for c in range(classes):
            for i in range(count):
                image = rng.integers(0, 128, (36 + 3 * i, 44, 3), dtype=np.uint8)
                image[..., c] = 230
                path = root / split / f"n{c:08d}" / f"{split}_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path, quality=95)
    return root



def test_default_recipe_is_the_releases():
    r = default_classification_recipe("hrvit_b2_cls")
    assert (r.opt, r.lr, r.weight_decay, r.sched, r.epochs, r.cooldown_epochs, r.warmup_epochs) == (
        "adamw", 1e-3, 0.05, "cosine", 300, 10, 20)
    assert (r.min_lr, r.warmup_lr, r.clip_grad, r.clip_mode, r.drop_path_rate, r.drop_rate) == (
        1e-5, 1e-6, 1.0, "norm", 0.1, 0.1)
    assert (r.aa, r.mixup, r.cutmix, r.mixup_switch_prob, r.smoothing, r.reprob, r.remode) == (
        "rand-m9-mstd0.5-inc1", 0.8, 1.0, 0.5, 0.1, 0.25, "pixel")
    assert (r.scale, r.train_interpolation, r.model_ema_decay, r.input_size, r.crop_pct, r.interpolation) == (
        (0.08, 1.0), "random", None, 224, 0.9, "bicubic")
    with pytest.raises(ValueError, match="not an ImageNet classifier; classifiers: hrvit_b1_cls"):
        default_classification_recipe("hrvit_b1_segformer")
    with pytest.raises(ValueError, match="is a classification model"):
        default_recipe("hrvit_b1_cls")


def test_loss_falls_when_overfitting(tmp_path):
    root = imagenet_folder(tmp_path / "data", val=0)
    recipe = default_classification_recipe("hrvit_b1_cls").replace(epochs=10, lr=2e-4, clip_grad=None,
                                                                   **dict(SMALL, batch_size=8), **PLAIN)
    train_classifier(recipe, root, tmp_path / "work", progress=False)
    logged = losses(tmp_path / "work")
    assert len(logged) == 20 and np.mean(logged[-6:]) < 0.3 * np.mean(logged[:6]), logged


def test_resume_is_exact_with_augmentation_mixup_and_ema(tmp_path):
    """RandAugment, random erasing, Mixup/CutMix, drop-path and EMA all draw random numbers; two DataLoader
    workers read the samples."""
    root = imagenet_folder(tmp_path / "data")
    recipe = default_classification_recipe("hrvit_b1_cls").replace(
        epochs=2, checkpoint_interval=3, model_ema_decay=0.9, **dict(SMALL, workers=2, warmup_epochs=1))
    train_classifier(recipe, root, tmp_path / "a", progress=False)
    train_classifier(recipe, root, tmp_path / "b", progress=False, stop_after=3)  # mid-epoch: 4 batches an epoch
    train_classifier(recipe, root, tmp_path / "b", progress=False)
    assert len(losses(tmp_path / "a")) == 8 and losses(tmp_path / "a") == losses(tmp_path / "b")
    final = [torch.load(checkpoint_paths(tmp_path / d)[-1], weights_only=True) for d in ("a", "b")]
    for part in ("model", "ema"):
        assert all(torch.equal(final[0][part][k], final[1][part][k]) for k in final[0][part])
    assert not all(torch.equal(final[0]["model"][k], final[0]["ema"][k]) for k in final[0]["model"])
    rows = [row["validation"] for row in log_rows(tmp_path / "a") if "validation" in row]
    assert [(r["iteration"], r["model"], r["images"]) for r in rows] == [
        (4, "model", 4), (4, "ema", 4), (8, "model", 4), (8, "ema", 4)]
    best = torch.load(tmp_path / "a" / "best.pth", weights_only=True)
    assert best["top1"] == max(r["top1"] for r in rows) and best["classes"] == ["n00000000", "n00000001"]


def test_two_gloo_processes_resume_exactly_and_share_the_validation_images(tmp_path):
    root = imagenet_folder(tmp_path / "data", val=3)  # 6 images: 3 per process
    run_two_processes(SCRIPT, root, tmp_path, "classification")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["losses_uninterrupted"] == report["losses_resumed"] and len(report["losses_resumed"]) == 4
    assert report["weights_equal"]
    assert [v["images"] for v in report["validations"]] == [6, 6, 6, 6]


def test_samples_are_seeded_by_epoch_and_index_and_leave_the_global_generators_alone():
    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return random.random(), float(np.random.rand()), torch.rand(1).item()

    samples = SeededSamples(Draws(), seed=5)
    random.seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    first = [samples[i] for i in (0, 1, 2)]
    assert [samples[i] for i in (2, 0, 1)] == [first[2], first[0], first[1]]
    assert len(set(first)) == 3
    samples.epoch = 1
    assert samples[0] != first[0]
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


def test_train_command_dispatches_classifiers(tmp_path, capsys):
    from hrvit_kernels.cli import main

    root = imagenet_folder(tmp_path / "data", per_class=2, val=0)
    assert main(["train", "hrvit_b1_cls", "--data-root", str(root), "--work-dir", str(tmp_path / "work"),
                 "epochs=1", "input_size=32", "batch_size=4", "workers=0", "warmup_epochs=0",
                 "cooldown_epochs=0", "scale=[0.5, 1.0]"]) == 0
    config = json.loads((tmp_path / "work" / "config.json").read_text())
    assert config["num_classes"] == 2 and config["classes"] == ["n00000000", "n00000001"]
    assert config["scale"] == [0.5, 1.0] and config["lr"] == 1e-3
    assert checkpoint_paths(tmp_path / "work")[-1].name == "iter_1.pth"
    assert '"aa": "rand-m9-mstd0.5-inc1"' in capsys.readouterr().out


def test_bad_folders_and_batches_are_named(tmp_path):
    recipe = default_classification_recipe("hrvit_b1_cls").replace(**SMALL)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="one subfolder per class"):
        train_classifier(recipe, tmp_path / "empty", tmp_path / "work", progress=False)
    root = imagenet_folder(tmp_path / "data", per_class=2, val=1)
    with pytest.raises(ValueError, match="batch_size must be even, got 3"):
        train_classifier(recipe.replace(batch_size=3), root, tmp_path / "work", progress=False)
    with pytest.raises(ValueError, match="num_classes=1 but"):
        train_classifier(recipe.replace(num_classes=1), root, tmp_path / "work", progress=False)
    (root / "val" / "n_unknown").mkdir()
    with pytest.raises(ValueError, match="class folders that train/ lacks: n_unknown"):
        train_classifier(recipe, root, tmp_path / "work", progress=False)
    assert not (tmp_path / "work").exists()  # a rejected run writes nothing
