"""Segmentation training on one process or many (torchrun: NCCL on GPUs, gloo on CPU), with exact resume.

Exactness: a sample's augmentation is drawn from a generator seeded by (seed, epoch, index), the sampler's
order by (seed, epoch), and the checkpoint holds the model, optimiser, gradient scaler, iteration and every
rank's python / numpy / torch RNG states; a resumed run starts the interrupted epoch at the next batch, so
it computes the same losses and weights as an uninterrupted one. Checkpoints are written atomically and the
last ``keep_checkpoints`` kept; a non-finite loss stops training before anything is written.
"""
from __future__ import annotations

import io
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hrvit_kernels._distributed import init_from_environment, local_device
from hrvit_kernels._files import write_atomically
from hrvit_kernels._optional import require
from hrvit_kernels.data import SegmentationDataset
from hrvit_kernels.data.datasets import BASE_SCALES
from hrvit_kernels.models import ATMLoss, create_model, cross_entropy_with_aux, model_card
from hrvit_kernels.train.optim import make_optimizer, set_learning_rate
from hrvit_kernels.train.recipes import Recipe
from hrvit_kernels.train.transforms import TrainPipeline


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class AugmentedDataset(torch.utils.data.Dataset):
    """A SegmentationDataset through the training pipeline, each sample's draws seeded by (seed, epoch, index)."""

    def __init__(self, dataset: SegmentationDataset, pipeline: TrainPipeline, seed: int):
        self.dataset, self.pipeline, self.seed, self.epoch = dataset, pipeline, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        np = require("numpy")
        image, label, _ = self.dataset[index]
        return self.pipeline(image, label, np.random.default_rng([self.seed, self.epoch, index]))


class EpochSampler(torch.utils.data.Sampler):
    """This rank's indices of one epoch from ``start`` on: a permutation seeded by (seed, epoch), padded by
    repetition to a multiple of the world size and dealt out as DistributedSampler does."""

    def __init__(self, size: int, rank: int, world: int, seed: int):
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.epoch, self.start = 0, 0
        self.per_rank = math.ceil(size / world)

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        order = order.tolist()
        order += order[:self.per_rank * self.world - self.size]
        return iter(order[self.rank::self.world][self.start:])

    def __len__(self) -> int:
        return self.per_rank - self.start


def rng_state() -> dict:
    """The RNG states as tensors and plain containers, so that checkpoints load with weights_only=True."""
    np = require("numpy")
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position,
                                                   has_gauss, gauss),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    np = require("numpy")
    random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in state["python"]))
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_loader(data, sampler: EpochSampler, iteration: int, iters_per_epoch: int, batch_size: int, workers: int):
    """The DataLoader of the epoch ``iteration`` falls in, from its next batch on (``data`` draws its samples'
    augmentation by its ``epoch``)."""
    epoch = iteration // iters_per_epoch
    sampler.set_position(epoch, (iteration % iters_per_epoch) * batch_size)
    data.epoch = epoch
    # Its own generator: a DataLoader iterator otherwise draws its workers' base seed from the global RNG,
    # which a resumed run (one more iterator) would leave at another state than the uninterrupted one.
    return torch.utils.data.DataLoader(data, batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                                       generator=torch.Generator().manual_seed(epoch))


def resume_newest(work_dir: Path, rank: int, **modules) -> int:
    """Loads the newest checkpoint in work_dir into ``modules`` (name -> object with load_state_dict, as
    saved under that name) and this rank's RNG states; returns its iteration (0 without a checkpoint)."""
    found = checkpoint_paths(work_dir)
    if not found:
        return 0
    state = torch.load(found[-1], map_location="cpu", weights_only=True)
    for name, module in modules.items():
        module.load_state_dict(state[name])
    set_rng_state(state["rng"][rank])
    return state["iteration"]


def checkpoint_paths(work_dir: Path) -> list[Path]:
    """The work dir's checkpoints, oldest first."""
    return sorted((work_dir / "checkpoints").glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))


def _model_overrides(recipe: Recipe) -> dict:
    overrides = dict(recipe.model_overrides)
    if recipe.with_cp:
        if recipe.model.startswith("hrvit"):
            overrides["with_cp"] = True
        else:
            overrides["backbone"] = dict(overrides.get("backbone", {}), with_cp=True)
    return overrides


def train(recipe: Recipe, data_root, work_dir, resume: bool = True, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Trains ``recipe.model`` on the train split under ``data_root`` (the dataset's layout), writing the
    configuration, JSON-lines logs and checkpoints to ``work_dir``. ``resume``: continue from the newest
    checkpoint there. ``stop_after``: stop (after checkpointing) at that iteration, as an interruption would.
    Returns the last logged values."""
    np = require("numpy")
    rank, world = init_from_environment()
    work_dir = Path(work_dir)
    device = local_device()
    random.seed(recipe.seed + rank)
    np.random.seed(recipe.seed + rank)
    torch.manual_seed(recipe.seed + rank)
    model = create_model(recipe.model, **_model_overrides(recipe))
    if world > 1 and recipe.sync_bn and device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPU modules only
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device).train()
    # SETR-MLA's heads keep the release's unused conv_seg, so DDP must look for unused parameters.
    wrapped = DistributedDataParallel(model, find_unused_parameters="mla" in recipe.model) if world > 1 else model
    optimizer = make_optimizer(model, recipe)
    scaler = torch.amp.GradScaler(enabled=recipe.amp == "fp16" and device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp)
    card = model_card(recipe.model)
    pipeline = TrainPipeline(BASE_SCALES[recipe.dataset], (recipe.crop, recipe.crop), card.mean, card.std)
    data = AugmentedDataset(SegmentationDataset(recipe.dataset, data_root, "train"), pipeline, recipe.seed)
    sampler = EpochSampler(len(data), rank, world, recipe.seed)
    iters_per_epoch = sampler.per_rank // recipe.batch_size
    if iters_per_epoch < 1:
        raise ValueError(f"train: {len(data)} images over {world} processes give no full batch of "
                         f"{recipe.batch_size}; lower batch_size")
    iteration = resume_newest(work_dir, rank, model=model, optimizer=optimizer, scaler=scaler) if resume else 0
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(work_dir / "config.json", json.dumps(vars(recipe), indent=2, default=str))
    criterion = None
    log_path, last, started = work_dir / "log.jsonl", {}, time.perf_counter()
    validation = _validation(recipe, data_root, work_dir, device, rank, log_path)
    board = tensorboard_writer(work_dir) if rank == 0 else None
    while iteration < recipe.iterations and (stop_after is None or iteration < stop_after):
        loader = epoch_loader(data, sampler, iteration, iters_per_epoch, recipe.batch_size, recipe.workers)
        tick = time.perf_counter()
        for images, labels in loader:
            data_time = time.perf_counter() - tick
            images, labels = images.to(device), labels.to(device)
            lr = set_learning_rate(optimizer, recipe, iteration)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                outputs = wrapped(images)
            if criterion is None:
                criterion = _criterion(recipe, outputs, model)
            losses = criterion(outputs, labels)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"train: the loss is {loss.item()} at iteration {iteration + 1} "
                                       f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); the "
                                       f"last good checkpoint was kept; lower lr or try amp=None")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if recipe.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            last = {"iteration": iteration, "lr": lr, "loss": loss.item(),
                    **{k: v.item() for k, v in losses.items()}, "data_time": data_time,
                    "time": time.perf_counter() - tick}
            if rank == 0 and (iteration % recipe.log_interval == 0 or iteration == recipe.iterations):
                log_row(last, log_path, board, recipe.iterations, started, device, progress)
            done = iteration >= recipe.iterations or (stop_after is not None and iteration >= stop_after)
            if iteration % recipe.checkpoint_interval == 0 or done:
                save_checkpoint(work_dir, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "scaler": scaler.state_dict(), "recipe": vars(recipe)},
                                iteration, recipe.keep_checkpoints, rank, world)
            if validation is not None and (iteration % recipe.val_interval == 0 or iteration >= recipe.iterations):
                last.update(validation(model, iteration))
            tick = time.perf_counter()
            if done:
                break
    return last


def tensorboard_writer(work_dir: Path):
    """A TensorBoard writer in work_dir/tensorboard when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(work_dir / "tensorboard"))


def _validation(recipe: Recipe, data_root, work_dir: Path, device, rank: int, log_path: Path):
    """A function (model, iteration) -> {"mIoU": ...} that evaluates on the val split with the release's test
    configuration (all processes share the images) and keeps the best model as best.pth; None when the
    dataset has no val split."""
    from hrvit_kernels.data import DatasetError
    from hrvit_kernels.inference import inference_config
    from hrvit_kernels.inference.evaluate import evaluate

    try:
        dataset = SegmentationDataset(recipe.dataset, data_root, "val")
    except DatasetError:
        if rank == 0:
            print(f"note: no val split under {data_root}: training without validation", flush=True)
        return None
    best = {"mIoU": -1.0}
    if (work_dir / "best.pth").is_file():
        best["mIoU"] = torch.load(work_dir / "best.pth", map_location="cpu", weights_only=True)["mIoU"]

    def validate(model, iteration: int) -> dict:
        model.eval()
        results = evaluate(model, inference_config(recipe.model), dataset, device=device, workers=recipe.workers,
                           progress=False)
        model.train()
        row = {"iteration": iteration, "mIoU": results["mIoU"], "mAcc": results["mAcc"], "aAcc": results["aAcc"]}
        if rank == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps({"validation": row}) + "\n")
            if results["mIoU"] > best["mIoU"]:  # NaN (no labelled pixel) never replaces a best model
                best["mIoU"] = results["mIoU"]
                save_atomically({"model": model.state_dict(), "iteration": iteration, "mIoU": results["mIoU"]},
                                 work_dir / "best.pth")
        return {"val_mIoU": results["mIoU"]}

    return validate


def _criterion(recipe: Recipe, outputs, model):
    if recipe.loss == "atm":
        classes = outputs["pred_logits"].shape[-1] - 1  # the extra "no object" class
        loss = ATMLoss(classes, dec_layers=1 + len(outputs["aux_outputs"]))
        return lambda out, label: loss(out, label)
    return lambda out, label: cross_entropy_with_aux(out, label, recipe.aux_weight)


def save_atomically(payload: dict, path: Path) -> None:
    """torch.save to a temporary file, then a rename: a crash never leaves a truncated checkpoint."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomically(path, buffer.getvalue())


def save_checkpoint(work_dir: Path, state: dict, iteration: int, keep: int, rank: int, world: int) -> None:
    """Writes ``state`` plus every rank's RNG states as work_dir/checkpoints/iter_<iteration>.pth (atomically,
    from rank 0) and keeps the newest ``keep`` checkpoints."""
    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    if rank == 0:
        save_atomically({**state, "iteration": iteration, "rng": states},
                        work_dir / "checkpoints" / f"iter_{iteration}.pth")
        for old in checkpoint_paths(work_dir)[:-keep]:
            old.unlink()
    if world > 1:
        dist.barrier()


def log_row(row: dict, log_path: Path, board, total: int, started: float, device, progress: bool) -> None:
    """Adds the ETA and peak memory to a logging interval's row, appends it to the JSON-lines log and
    TensorBoard, and prints a progress line."""
    iteration = row["iteration"]
    row["eta_s"] = (time.perf_counter() - started) / max(iteration, 1) * (total - iteration)
    if device.type == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    with open(log_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    if board is not None:
        for key, value in row.items():
            board.add_scalar(f"train/{key}", value, iteration)
    if progress:
        print(f"iter {iteration}/{total} loss {row['loss']:.4f} lr {row['lr']:.3g} "
              f"eta {row['eta_s'] / 60:.1f} min", flush=True)
