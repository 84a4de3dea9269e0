"""mIoU of a segmentor on a dataset split, as the releases measured it (their test configurations)."""
from __future__ import annotations

import time

import torch

from hrvit_kernels._optional import require
from hrvit_kernels.inference.segmenter import Segmenter, InferenceConfig
from hrvit_kernels.metrics import IoUMetric


def _first(batch):
    return batch[0]


def evaluate(model: torch.nn.Module, config: InferenceConfig, dataset, mode: str | None = None, flip: bool = False,
             scales=None, device=None, amp: str | None = None, workers: int = 2, progress: bool = True) -> dict:
    """Runs the segmentor over ``dataset`` (a SegmentationDataset) and returns mmseg's metrics (mIoU, mAcc,
    aAcc, per-class IoU and Acc) plus the throughput. Images are read in ``workers`` processes; under
    torch.distributed each process takes its share and the areas are summed across processes."""
    from torch.utils.data import DataLoader

    tqdm = require("tqdm").tqdm
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    # Every image exactly once across the processes (DistributedSampler would repeat some to even the
    # shares, and count them twice in the metric).
    sampler = (range(torch.distributed.get_rank(), len(dataset), torch.distributed.get_world_size())
               if distributed else None)
    # Its own generator: evaluating (during training, say) leaves the global RNG as it was.
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, collate_fn=_first,
                        generator=torch.Generator().manual_seed(0))
    segmenter = Segmenter(model, config, device=device, amp=amp)
    metric = IoUMetric(dataset.num_classes, device=segmenter.device)
    start = time.perf_counter()
    images = 0
    show = progress and (not distributed or torch.distributed.get_rank() == 0)
    for image, label, _ in tqdm(loader, desc=f"evaluate {dataset.dataset}", unit="img", disable=not show):
        pred = segmenter.segment(image, mode=mode, flip=flip, scales=scales)
        metric.update(pred, torch.from_numpy(label))
        images += 1
    metric.all_reduce()
    results = metric.compute(dataset.class_names)
    elapsed = time.perf_counter() - start
    if distributed:  # images over all processes
        count = torch.tensor([images], device=metric.areas.device)
        torch.distributed.all_reduce(count)
        images = int(count.item())
    results.update(images=images, seconds=elapsed, images_per_second=images / elapsed if elapsed else 0.0)
    return results
