"""Training losses: SegViT's ATM loss and cross-entropy with auxiliary heads (SETR)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def sigmoid_focal_loss(logits, targets, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per mask: mean over pixels of the sigmoid focal loss; logits and targets (M, P)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1)


def dice_loss(logits, targets, smooth: float = 1.0) -> torch.Tensor:
    """Per mask: 1 - (2 |p t| + smooth) / (|p| + |t| + smooth); logits and targets (M, P)."""
    p = logits.sigmoid()
    return 1 - (2 * (p * targets).sum(1) + smooth) / (p.sum(1) + targets.sum(1) + smooth)


class ATMLoss(nn.Module):
    """SegViT's loss. Query k is always class k (no matching). Cross-entropy over num_classes + 1 on the
    class logits (target k if class k is present in the image, else "no object"; weight 0.1 for "no
    object"); sigmoid focal (x20) and dice (x1) losses on the masks of present classes against
    (label == k) at label resolution, each normalised by the number of present classes in the batch
    (all-reduced when distributed, at least 1). Ignored pixels count as negatives for every mask.
    Applied to the final output (loss_ce, loss_mask, loss_dice) and each auxiliary output (suffix _i)."""

    def __init__(self, num_classes: int, dec_layers: int, loss_weight: float = 1.0, no_object_weight: float = 0.1,
                 mask_weight: float = 20.0, dice_weight: float = 1.0):
        super().__init__()
        self.num_classes, self.dec_layers, self.loss_weight = num_classes, dec_layers, loss_weight
        self.mask_weight, self.dice_weight = mask_weight, dice_weight
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = no_object_weight
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(self, outputs: dict, label: torch.Tensor, ignore_index: int = 255) -> dict[str, torch.Tensor]:
        if label.dim() != 3:
            raise ValueError(f"ATMLoss: 'label' must be (B, H, W) class indices, got shape {tuple(label.shape)}")
        if not isinstance(outputs, dict) or "pred_logits" not in outputs or "pred_masks" not in outputs:
            raise ValueError("ATMLoss: 'outputs' must be the training-mode dict of a SegViT head "
                             "(pred_logits, pred_masks, aux_outputs)")
        supervised = 1 + len(outputs.get("aux_outputs", []))
        if supervised != self.dec_layers:
            raise ValueError(f"ATMLoss: dec_layers = {self.dec_layers}, but 'outputs' holds {supervised} supervised "
                             f"outputs (the final one and {supervised - 1} auxiliary)")
        present = torch.stack([torch.bincount(l[l != ignore_index].flatten(), minlength=self.num_classes)
                               [: self.num_classes] > 0 for l in label])  # (B, N)
        num_masks = present.sum().float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_masks)
            num_masks = num_masks / dist.get_world_size()
        num_masks = num_masks.clamp(min=1)
        losses = self._single(outputs, label, present, num_masks, "")
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._single(aux, label, present, num_masks, f"_{i}"))
        return losses

    def _single(self, out, label, present, num_masks, suffix: str) -> dict[str, torch.Tensor]:
        logits, masks = out["pred_logits"], out["pred_masks"]
        B, N = present.shape
        classes = torch.arange(N, device=label.device).expand(B, N)
        target = torch.where(present, classes, torch.full_like(classes, N))
        loss_ce = F.cross_entropy(logits.float().transpose(1, 2), target, weight=self.class_weight.to(logits.device))
        masks = F.interpolate(masks.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
        b_idx, q_idx = present.nonzero(as_tuple=True)
        pred = masks[b_idx, q_idx].flatten(1)
        truth = (label[b_idx] == q_idx[:, None, None]).float().flatten(1)  # ignored pixels are negatives
        loss_mask = sigmoid_focal_loss(pred, truth).sum() / num_masks
        loss_dice = dice_loss(pred, truth).sum() / num_masks
        w = self.loss_weight
        return {f"loss_ce{suffix}": w * loss_ce, f"loss_mask{suffix}": w * self.mask_weight * loss_mask,
                f"loss_dice{suffix}": w * self.dice_weight * loss_dice}


def cross_entropy_with_aux(outputs, label: torch.Tensor, aux_weight: float = 0.4,
                           ignore_index: int = 255) -> dict[str, torch.Tensor]:
    """SETR's loss: cross-entropy on the main logits (weight 1) and each auxiliary head's (aux_weight)."""
    if isinstance(outputs, torch.Tensor):
        outputs = dict(pred=outputs, aux=[])
    losses = {"loss_ce": F.cross_entropy(outputs["pred"], label, ignore_index=ignore_index)}
    for i, aux in enumerate(outputs.get("aux", [])):
        losses[f"loss_ce_aux{i}"] = aux_weight * F.cross_entropy(aux, label, ignore_index=ignore_index)
    return losses
