"""Semantic segmentation metrics with mmseg's definitions, accumulated over a whole split.

Per class c over the labelled pixels (label != ignore_index): intersection I_c (predicted c and labelled c),
prediction area P_c, label area L_c, union U_c = P_c + L_c - I_c. IoU_c = I_c / U_c, Acc_c = I_c / L_c;
mIoU and mAcc are the means over classes whose denominator is non-zero (the others are NaN and skipped);
aAcc = sum I_c / sum L_c.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist


class IoUMetric:
    """Accumulates per-class areas on the predictions' device; ``all_reduce()`` sums them across processes
    (torch.distributed), ``compute()`` reports mIoU, mAcc, aAcc and per-class IoU and Acc."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"IoUMetric: argument 'num_classes' must be a positive int, got {num_classes!r}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # intersection, prediction area, label area per class; int64 counts are exact at any dataset size
        self.areas = torch.zeros(3, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """pred and label: integer maps of one shape (H, W) or (B, H, W); label values in [0, num_classes)
        or ignore_index, predictions in [0, num_classes)."""
        for name, t in (("pred", pred), ("label", label)):
            if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
                raise TypeError(f"IoUMetric.update: argument '{name}' must be an integer tensor, got "
                                f"{type(t).__name__ if not isinstance(t, torch.Tensor) else t.dtype}")
        if pred.shape != label.shape:
            raise ValueError(f"IoUMetric.update: 'pred' has shape {tuple(pred.shape)} but 'label' has "
                             f"{tuple(label.shape)}")
        pred, label = pred.to(self.areas.device).long(), label.to(self.areas.device).long()
        labelled = label != self.ignore_index
        pred, label = pred[labelled], label[labelled]
        for name, t in (("label", label), ("pred", pred)):
            if t.numel() and (t.min() < 0 or t.max() >= self.num_classes):
                bad = t[(t < 0) | (t >= self.num_classes)].unique()[:5].tolist()
                raise ValueError(f"IoUMetric.update: argument '{name}' has values {bad} outside [0, "
                                 f"{self.num_classes}) and the ignore index {self.ignore_index}")
        n = self.num_classes
        self.areas[0] += torch.bincount(label[pred == label], minlength=n)
        self.areas[1] += torch.bincount(pred, minlength=n)
        self.areas[2] += torch.bincount(label, minlength=n)

    def all_reduce(self) -> None:
        """Sums the areas over all processes of the default group (a no-op outside torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.areas)

    def compute(self, class_names=None) -> dict:
        intersection, pred_area, label_area = self.areas.double().cpu()
        union = pred_area + label_area - intersection
        iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.nan)
        acc = torch.where(label_area > 0, intersection / label_area.clamp_min(1), torch.nan)
        total = label_area.sum().item()
        names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        return {
            "mIoU": _nanmean(iou), "mAcc": _nanmean(acc),
            "aAcc": intersection.sum().item() / total if total else math.nan,
            "per_class": {name: {"IoU": i, "Acc": a} for name, i, a in zip(names, iou.tolist(), acc.tolist())},
        }


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return kept.mean().item() if kept.numel() else math.nan
