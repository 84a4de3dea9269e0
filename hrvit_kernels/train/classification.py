"""ImageNet-style pretraining of the classifiers on an ImageNet-layout folder (``train/<class>/*``,
``val/<class>/*``), built from timm's maintained components: its transforms (random-resized crop,
RandAugment, random erasing), Mixup/CutMix with label smoothing, optimiser and cosine schedule factories, and
model EMA. One process or many (torchrun), with the segmentation loop's exact resume: each sample's
augmentation is seeded by (seed, epoch, index), the checkpoint holds every rank's RNG states (Mixup draws from
numpy's), the sampler resumes the interrupted epoch at the next batch.
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hrvit_kernels._distributed import init_from_environment, local_device
from hrvit_kernels._files import write_atomically
from hrvit_kernels._optional import require
from hrvit_kernels.models import create_model, model_card
from hrvit_kernels.train.loop import (EpochSampler, TrainingDiverged, epoch_loader, log_row, resume_newest,
                                      save_atomically, save_checkpoint, tensorboard_writer)
from hrvit_kernels.train.recipes import replace_fields

@dataclass
class ClassificationRecipe:
    """timm train.py's arguments under their timm names (the epoch counts exclude the cool-down epochs)."""
    model: str
    epochs: int = 300
    cooldown_epochs: int = 10
    warmup_epochs: int = 20
    batch_size: int = 32                    # per process
    opt: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    sched: str = "cosine"
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    clip_grad: float | None = 1.0
    clip_mode: str = "norm"
    drop_rate: float = 0.1                  # the head's dropout
    drop_path_rate: float = 0.1
    input_size: int = 224
    crop_pct: float = 0.9                   # evaluation: resize to input_size / crop_pct, centre crop
    interpolation: str = "bicubic"          # evaluation
    train_interpolation: str = "random"
    scale: tuple[float, float] = (0.08, 1.0)
    color_jitter: float = 0.4
    aa: str | None = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    remode: str = "pixel"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    model_ema_decay: float | None = None    # None: no EMA
    sync_bn: bool = True
    amp: str | None = None                  # None (fp32) | "bf16" | "fp16" (CUDA, with a gradient scaler)
    num_classes: int | None = None          # None: the number of class folders
    seed: int = 0
    workers: int = 4
    log_interval: int = 50
    checkpoint_interval: int | None = None  # iterations; None: at the end of every epoch
    keep_checkpoints: int = 3
    model_overrides: dict = field(default_factory=dict)

    def replace(self, **overrides) -> "ClassificationRecipe":
        return replace_fields(self, overrides)


def default_classification_recipe(name: str) -> ClassificationRecipe:
    """The release's ImageNet recipe of a registered classifier. HRViT (hrvit.md section 10): batch 1024 as 32
    per GPU x 32 GPUs. HLG (hlg.md section 2.7, its Swin-style config): batch 128 per GPU, lr 5e-4, EMA."""
    card = model_card(name)
    if card.task != "classification":
        raise ValueError(f"default_classification_recipe: {name!r} is not an ImageNet classifier; classifiers: "
                         f"{', '.join(n for n in _classifiers())}")
    if card.family == "hlg":
        return ClassificationRecipe(name, input_size=card.input_size, batch_size=128, lr=5e-4, min_lr=5e-6,
                                    warmup_lr=5e-7, cooldown_epochs=0, clip_grad=5.0, drop_rate=0.0,
                                    drop_path_rate=0.2, crop_pct=0.875, train_interpolation="bicubic",
                                    model_ema_decay=0.99996)
    return ClassificationRecipe(name, input_size=card.input_size)


def _classifiers() -> list[str]:
    from hrvit_kernels.models.cards import CARDS
    return [name for name, card in CARDS.items() if card.task == "classification"]


def class_folders(root: Path) -> list[str]:
    """The class names of an ImageNet-layout split folder: its subfolders, sorted."""
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not names:
        raise FileNotFoundError(f"{root}: expected an ImageNet-layout folder with one subfolder per class "
                                f"(train/<class>/*.JPEG); found no class folder")
    return names


class SeededSamples(torch.utils.data.Dataset):
    """A dataset whose transforms draw from python's, numpy's and torch's global generators (timm's do),
    seeded per sample by (seed, epoch, index) and restored afterwards: a sample's augmentation does not depend
    on the worker that reads it, so a resumed run sees the same samples as an uninterrupted one."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        np = require("numpy")
        sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        with _global_generators_seeded(sample_seed):
            return self.dataset[index]


@contextlib.contextmanager
def _global_generators_seeded(seed: int):
    np = require("numpy")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _image_dataset(root: Path, classes: list[str], transform):
    timm_data = require("timm.data")
    return timm_data.ImageDataset(str(root), class_map={name: i for i, name in enumerate(classes)},
                                  transform=transform)


def _transforms(recipe: ClassificationRecipe, mean, std):
    timm_data = require("timm.data")
    mean, std = tuple(m / 255 for m in mean), tuple(s / 255 for s in std)
    train = timm_data.create_transform(recipe.input_size, is_training=True, scale=recipe.scale,
                                       color_jitter=recipe.color_jitter, auto_augment=recipe.aa,
                                       interpolation=recipe.train_interpolation, mean=mean, std=std,
                                       re_prob=recipe.reprob, re_mode=recipe.remode)
    val = timm_data.create_transform(recipe.input_size, is_training=False, interpolation=recipe.interpolation,
                                     crop_pct=recipe.crop_pct, mean=mean, std=std)
    return train, val


def train_classifier(recipe: ClassificationRecipe, data_root, work_dir, resume: bool = True, progress: bool = True,
                     stop_after: int | None = None) -> dict:
    """Trains ``recipe.model`` on data_root/train, validating top-1/top-5 on data_root/val (when present)
    after every epoch and keeping the best model as best.pth; configuration, JSON-lines logs and checkpoints
    go to ``work_dir``. ``resume``: continue from the newest checkpoint there. ``stop_after``: stop (after
    checkpointing) at that iteration, as an interruption would. Returns the last logged values."""
    timm_data, timm_loss, timm_utils = require("timm.data"), require("timm.loss"), require("timm.utils")
    timm_optim, timm_scheduler = require("timm.optim"), require("timm.scheduler")
    np = require("numpy")
    rank, world = init_from_environment()
    data_root, work_dir = Path(data_root), Path(work_dir)
    device = local_device()
    random.seed(recipe.seed + rank)
    np.random.seed(recipe.seed + rank)
    torch.manual_seed(recipe.seed + rank)

    classes = class_folders(data_root / "train")
    num_classes = recipe.num_classes or len(classes)
    if num_classes < len(classes):
        raise ValueError(f"train_classifier: num_classes={num_classes} but {data_root / 'train'} has "
                         f"{len(classes)} class folders")
    card = model_card(recipe.model)
    train_transform, val_transform = _transforms(recipe, card.mean, card.std)
    data = SeededSamples(_image_dataset(data_root / "train", classes, train_transform), recipe.seed)
    sampler = EpochSampler(len(data), rank, world, recipe.seed)
    iters_per_epoch = sampler.per_rank // recipe.batch_size
    if iters_per_epoch < 1:
        raise ValueError(f"train_classifier: {len(data)} images over {world} processes give no full batch of "
                         f"{recipe.batch_size}; lower batch_size")
    mixing = recipe.mixup > 0 or recipe.cutmix > 0
    if mixing and recipe.batch_size % 2:
        raise ValueError(f"train_classifier: Mixup/CutMix pair the images of a batch; batch_size must be even, "
                         f"got {recipe.batch_size}")

    model = create_model(recipe.model, num_classes=num_classes, drop_rate=recipe.drop_rate,
                         drop_path_rate=recipe.drop_path_rate, **recipe.model_overrides)
    if world > 1 and recipe.sync_bn and device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPU modules only
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device).train()
    wrapped = DistributedDataParallel(model) if world > 1 else model
    optimizer = timm_optim.create_optimizer_v2(model, recipe.opt, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler, total_epochs = timm_scheduler.create_scheduler_v2(
        optimizer, recipe.sched, num_epochs=recipe.epochs, cooldown_epochs=recipe.cooldown_epochs,
        min_lr=recipe.min_lr, warmup_lr=recipe.warmup_lr, warmup_epochs=recipe.warmup_epochs, step_on_epochs=False,
        updates_per_epoch=iters_per_epoch)
    total = total_epochs * iters_per_epoch
    ema = timm_utils.ModelEmaV3(model, decay=recipe.model_ema_decay) if recipe.model_ema_decay else None
    scaler = torch.amp.GradScaler(enabled=recipe.amp == "fp16" and device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp)
    mixup = timm_data.Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                            switch_prob=recipe.mixup_switch_prob, label_smoothing=recipe.smoothing,
                            num_classes=num_classes) if mixing else None
    if mixing:
        criterion = timm_loss.SoftTargetCrossEntropy()
    elif recipe.smoothing:
        criterion = timm_loss.LabelSmoothingCrossEntropy(recipe.smoothing)
    else:
        criterion = torch.nn.CrossEntropyLoss()

    checkpointed = dict(model=model, optimizer=optimizer, scaler=scaler)
    if ema is not None:
        checkpointed["ema"] = ema.module
    iteration = resume_newest(work_dir, rank, **checkpointed) if resume else 0
    validation = _validation(recipe, data_root, classes, val_transform, work_dir, device, rank, world)
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(work_dir / "config.json", json.dumps(
            {**vars(recipe), "num_classes": num_classes, "classes": classes, "total_epochs": total_epochs},
            indent=2, default=str))
    checkpoint_every = recipe.checkpoint_interval or iters_per_epoch
    log_path, last, started = work_dir / "log.jsonl", {}, time.perf_counter()
    board = tensorboard_writer(work_dir) if rank == 0 else None
    while iteration < total and (stop_after is None or iteration < stop_after):
        epoch = iteration // iters_per_epoch
        loader = epoch_loader(data, sampler, iteration, iters_per_epoch, recipe.batch_size, recipe.workers)
        tick = time.perf_counter()
        for images, targets in loader:
            data_time = time.perf_counter() - tick
            images, targets = images.to(device), targets.to(device)
            if mixup is not None:
                images, targets = mixup(images, targets)
            scheduler.step_update(iteration)
            lr = optimizer.param_groups[0]["lr"]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = criterion(wrapped(images), targets)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"train_classifier: the loss is {loss.item()} at iteration {iteration + 1}; "
                                       f"the last good checkpoint was kept; lower lr or try amp=None")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.clip_grad:
                scaler.unscale_(optimizer)
                timm_utils.dispatch_clip_grad(model.parameters(), recipe.clip_grad, mode=recipe.clip_mode)
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            if ema is not None:
                ema.update(model, step=iteration)
            last = {"iteration": iteration, "epoch": epoch, "lr": lr, "loss": loss.item(), "data_time": data_time,
                    "time": time.perf_counter() - tick}
            if rank == 0 and (iteration % recipe.log_interval == 0 or iteration == total):
                log_row(last, log_path, board, total, started, device, progress)
            done = iteration >= total or (stop_after is not None and iteration >= stop_after)
            if iteration % checkpoint_every == 0 or done:
                state = {name: m.state_dict() for name, m in checkpointed.items()}
                save_checkpoint(work_dir, {**state, "recipe": vars(recipe)}, iteration, recipe.keep_checkpoints,
                                rank, world)
            if validation is not None and (iteration % iters_per_epoch == 0 or iteration >= total):
                last.update(validation(model, iteration, "model"))
                if ema is not None:
                    last.update(validation(ema.module, iteration, "ema"))
            tick = time.perf_counter()
            if done:
                break
    return last


def _validation(recipe: ClassificationRecipe, data_root: Path, classes: list[str], transform, work_dir: Path,
                device, rank: int, world: int):
    """A function (model, iteration, which) -> {"<which>_top1", "<which>_top5"} on the val split (the
    processes share its images, each exactly once), keeping the best model as best.pth; None without one."""
    val_root = data_root / "val"
    if not val_root.is_dir():
        if rank == 0:
            print(f"note: no val folder under {data_root}: training without validation", flush=True)
        return None
    unknown = sorted(set(class_folders(val_root)) - set(classes))
    if unknown:
        raise ValueError(f"train_classifier: {val_root} has class folders that train/ lacks: {', '.join(unknown[:5])}")
    dataset = _image_dataset(val_root, classes, transform)
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    best = {"top1": -1.0}
    if (work_dir / "best.pth").is_file():
        best["top1"] = torch.load(work_dir / "best.pth", map_location="cpu", weights_only=True)["top1"]

    @torch.no_grad()
    def validate(model, iteration: int, which: str) -> dict:
        was_training = model.training
        model.eval()
        counts = torch.zeros(3, dtype=torch.float64, device=device)  # images, top-1 hits, top-5 hits
        # Its own generator: one drawn from the global RNG would make the run depend on when validation ran.
        loader = torch.utils.data.DataLoader(shard, recipe.batch_size, num_workers=recipe.workers,
                                             generator=torch.Generator().manual_seed(0))
        for images, targets in loader:
            logits = model(images.to(device)).float()
            targets = targets.to(device)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == targets[:, None]
            counts += torch.stack([torch.tensor(len(targets), device=device), hits[:, 0].sum(), hits.any(1).sum()])
        if world > 1:
            dist.all_reduce(counts)
        model.train(was_training)
        top1, top5 = (100 * counts[1:] / counts[0].clamp(min=1)).tolist()
        row = {"iteration": iteration, "model": which, "top1": top1, "top5": top5, "images": int(counts[0])}
        if rank == 0:
            with open(work_dir / "log.jsonl", "a") as f:
                f.write(json.dumps({"validation": row}) + "\n")
            if top1 > best["top1"]:
                best["top1"] = top1
                save_atomically({"model": model.state_dict(), "iteration": iteration, "top1": top1, "top5": top5,
                                 "classes": classes}, work_dir / "best.pth")
        return {f"{which}_top1": top1, f"{which}_top5": top5}

    return validate
