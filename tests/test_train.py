"""Training: the releases' recipes, the pipeline, parameter-wise rules and schedules, overfitting 8 images,
every family's loss, exact resume on one process and on two gloo processes, atomic checkpoints, a diverging
loss, and the command line."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hrvit_kernels.train.loop as loop
from hrvit_kernels.train import TrainingDiverged, checkpoint_paths, default_recipe, train
from hrvit_kernels.train.optim import learning_rate, parameter_groups
from hrvit_kernels.train.transforms import TrainPipeline, photometric_distortion

from tiny_models import FAMILIES
from torchrun import run_two_processes
from work_dirs import log_rows, losses

SCRIPT = Path(__file__).resolve().parent / "scripts" / "train_two_processes.py"
SMALL = dict(crop=64, batch_size=2, workers=0, log_interval=1, warmup_iters=0, lr=1e-3)


def learnable_dataset(root: Path, count: int = 8, val: int = 0) -> Path:
    """ADE20K layout; the label of a pixel is its red channel's half (values 1, 2: classes 0, 1); ``val``
    images in the validation split too."""
    rng = np.random.default_rng(0)
    for i in range(count + val):
        split = "training" if i < count else "validation"
        image = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
        image[:, :, 0] = np.where(np.arange(96)[None, :] < 48 + 8 * (i % 3), 30, 220)
        label = (1 + (image[:, :, 0] > 127)).astype(np.uint8)
        for folder, array, suffix in (("images", image, "png"), ("annotations", label, "png")):
            path = root / folder / split / f"{i:03d}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
    # The reader takes .jpg images; PNG content under a .jpg name keeps the pixels exact.
    for path in (root / "images").glob("*/*.png"):
        path.rename(path.with_suffix(".jpg"))
    return root



def test_default_recipes_are_the_releases():
    hrvit = default_recipe("hrvit_b1_segformer")
    assert (hrvit.optimizer, hrvit.lr, hrvit.weight_decay, hrvit.warmup_iters, hrvit.head_lr_mult) == ("adamw", 6e-5,
                                                                                                      0.01, 1500, 10.0)
    assert default_recipe("hrvit_b3_segformer").head_lr_mult == 1.0  # the b3 config lacks the x10
    segvit = default_recipe("segvit_vit_l_coco_stuff")
    assert (segvit.lr, segvit.weight_decay, segvit.poly_power, segvit.grad_clip, segvit.loss, segvit.crop) == (
        2e-5, 0.02, 2.0, 35.0, "atm", 512)
    naive, mla = default_recipe("setr_naive_vit_l"), default_recipe("setr_mla_vit_l")
    assert (naive.optimizer, naive.lr, mla.lr, mla.poly_power, mla.min_lr) == ("sgd", 0.01, 0.001, 0.9, 1e-4)
    with pytest.raises(ValueError, match="unknown field\\(s\\) learning_rate"):
        naive.replace(learning_rate=1)


def test_schedule_and_parameter_groups():
    recipe = default_recipe("hrvit_b1_segformer").replace(iterations=10_000)
    assert learning_rate(recipe, 0) == pytest.approx(6e-5 * 1e-6)
    assert learning_rate(recipe, 750) == pytest.approx(6e-5 * (1 - 750 / 10_000) * (1 - 0.5 * (1 - 1e-6)))
    assert learning_rate(recipe, 10_000) == 0.0
    setr = default_recipe("setr_pup_vit_l").replace(iterations=100)
    assert learning_rate(setr, 50) == pytest.approx((1e-3 - 1e-4) * 0.5 ** 0.9 + 1e-4)
    model = loop.create_model("hrvit_b1_segformer", num_classes=5)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in parameter_groups(model, recipe):
        for p in group["params"]:
            assert (group["weight_decay"] == 0) == ("norm" in names[id(p)])
            assert group["lr_mult"] == (10.0 if "head" in names[id(p)] else 1.0)


def test_pipeline_crops_pads_and_depends_only_on_its_generator():
    pipeline = TrainPipeline((128, 32), (40, 48), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ratio_range=(0.5, 0.7))
    rng = np.random.default_rng(0)
    image, label = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8), rng.integers(0, 3, (30, 20))
    a = pipeline(image, label, np.random.default_rng(5))
    b = pipeline(image, label, np.random.default_rng(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    out, target = a
    assert out.shape == (3, 40, 48) and target.shape == (40, 48)
    assert (target == 255).any() and set(target.unique().tolist()) <= {0, 1, 2, 255}  # padded with 255
    distorted = photometric_distortion(image.astype(np.float32), np.random.default_rng(1))
    assert distorted.min() >= 0 and distorted.max() <= 255


def test_loss_falls_when_overfitting_eight_images(tmp_path):
    root = learnable_dataset(tmp_path / "data")
    recipe = default_recipe("hrvit_b1_segformer").replace(iterations=24, **SMALL, model_overrides=dict(num_classes=2))
    train(recipe, root, tmp_path / "work", progress=False)
    logged = losses(tmp_path / "work")
    assert np.mean(logged[-4:]) < 0.6 * np.mean(logged[:4]), logged


@pytest.mark.parametrize("name", ["segvit_vit_l_ade20k", "setr_mla_vit_l"])
def test_every_family_trains(tmp_path, name):
    root = learnable_dataset(tmp_path / "data", count=4)
    overrides = dict(FAMILIES[name], num_classes=150)
    recipe = default_recipe(name).replace(iterations=2, **SMALL, model_overrides=overrides)
    last = train(recipe, root, tmp_path / "work", progress=False)
    assert last["iteration"] == 2 and np.isfinite(last["loss"])
    expected = {"loss_ce", "loss_mask", "loss_dice"} if name.startswith("segvit") else {"loss_ce", "loss_ce_aux0"}
    assert expected <= set(last)


def test_validation_keeps_the_best_model(tmp_path):
    root = learnable_dataset(tmp_path / "data", count=4, val=2)
    recipe = default_recipe("hrvit_b1_segformer").replace(iterations=4, val_interval=2, **SMALL,
                                                          model_overrides=dict(num_classes=2))
    last = train(recipe, root, tmp_path / "work", progress=False)
    rows = [row["validation"] for row in log_rows(tmp_path / "work") if "validation" in row]
    assert [r["iteration"] for r in rows] == [2, 4] and all(0 <= r["mIoU"] <= 1 for r in rows)
    best = torch.load(tmp_path / "work" / "best.pth", weights_only=True)
    assert best["mIoU"] == max(r["mIoU"] for r in rows) and last["val_mIoU"] == rows[-1]["mIoU"]


def test_resume_is_exact_and_checkpoints_are_kept_atomically(tmp_path, monkeypatch):
    root = learnable_dataset(tmp_path / "data")
    recipe = default_recipe("hrvit_b1_segformer").replace(iterations=6, checkpoint_interval=2, keep_checkpoints=2,
                                                          **SMALL, model_overrides=dict(num_classes=2))
    train(recipe, root, tmp_path / "a", progress=False)
    train(recipe, root, tmp_path / "b", progress=False, stop_after=3)  # an interruption mid-epoch
    train(recipe, root, tmp_path / "b", progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    final = [torch.load(checkpoint_paths(tmp_path / d)[-1], weights_only=True)["model"] for d in ("a", "b")]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    assert [p.name for p in checkpoint_paths(tmp_path / "a")] == ["iter_4.pth", "iter_6.pth"]

    # A crash while a checkpoint is written leaves the previous one whole, and no partial file.
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("iter_8.pth"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        train(recipe.replace(iterations=8), root, tmp_path / "a", progress=False)
    assert [p.name for p in checkpoint_paths(tmp_path / "a")] == ["iter_4.pth", "iter_6.pth"]
    assert torch.load(checkpoint_paths(tmp_path / "a")[-1], weights_only=True)["iteration"] == 6
    assert not list((tmp_path / "a" / "checkpoints").glob(".*tmp"))


def test_a_diverging_loss_stops_without_writing(tmp_path, monkeypatch):
    root = learnable_dataset(tmp_path / "data", count=4)
    recipe = default_recipe("hrvit_b1_segformer").replace(iterations=4, checkpoint_interval=1, **SMALL,
                                                          model_overrides=dict(num_classes=2))
    calls = []

    def criterion(recipe_, outputs, model):
        def loss(out, label):
            calls.append(1)
            value = torch.nn.functional.cross_entropy(out, label, ignore_index=255)
            return {"loss_ce": value * (float("nan") if len(calls) == 3 else 1.0)}
        return loss

    monkeypatch.setattr(loop, "_criterion", criterion)
    with pytest.raises(TrainingDiverged, match="the loss is nan at iteration 3"):
        train(recipe, root, tmp_path / "work", progress=False)
    assert [p.name for p in checkpoint_paths(tmp_path / "work")][-1] == "iter_2.pth"


def test_two_gloo_processes_resume_exactly(tmp_path):
    """(PyTorch's SyncBatchNorm refuses CPU tensors: its test, the last here, runs where CUDA is.)"""
    root = learnable_dataset(tmp_path / "data")
    run_two_processes(SCRIPT, root, tmp_path, "segmentation")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["losses_uninterrupted"] == report["losses_resumed"] and len(report["losses_resumed"]) == 4
    assert report["weights_equal"]


def test_train_command_saves_the_resolved_configuration(tmp_path, capsys):
    from hrvit_kernels.cli import main

    root = learnable_dataset(tmp_path / "data", count=4)
    assert main(["train", "hrvit_b1_segformer", "--data-root", str(root), "--work-dir", str(tmp_path / "work"),
                 "iterations=1", "crop=64", "workers=0", 'model_overrides={"num_classes": 2}']) == 0
    config = json.loads((tmp_path / "work" / "config.json").read_text())
    assert config["iterations"] == 1 and config["lr"] == 6e-5 and config["model_overrides"] == {"num_classes": 2}
    assert checkpoint_paths(tmp_path / "work")[-1].name == "iter_1.pth"
    assert '"optimizer": "adamw"' in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch's SyncBatchNorm refuses CPU tensors: needs CUDA")
def test_sync_batchnorm_on_two_processes_equals_batchnorm_on_the_joined_batch(tmp_path):
    """Two gloo processes share one GPU (NCCL would need two)."""
    script = Path(__file__).resolve().parent / "scripts" / "sync_batchnorm.py"
    run_two_processes(script, tmp_path, threads=None)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sync_batchnorm_modules"] > 0
    assert max(report["output_rel"], report["grad_rel"], report["running_stats_rel"]) < 1e-4, report
