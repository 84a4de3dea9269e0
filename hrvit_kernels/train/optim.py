"""The releases' parameter-wise rules and schedules: no weight decay on parameters whose name contains one of
the recipe's keywords ("norm", for SegViT also "ln"), the head's learning rate multiplied (names containing
"head", as mmseg's custom_keys match), poly decay to min_lr after a linear warm-up from warmup_ratio."""
from __future__ import annotations

import torch

from hrvit_kernels.train.recipes import Recipe


def parameter_groups(model: torch.nn.Module, recipe: Recipe) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not any(k in name for k in recipe.no_decay_keywords)
        head = "head" in name
        groups.setdefault((decay, head), []).append(param)
    return [{"params": params, "weight_decay": recipe.weight_decay if decay else 0.0,
             "lr_mult": recipe.head_lr_mult if head else 1.0, "lr": recipe.lr * (recipe.head_lr_mult if head else 1.0)}
            for (decay, head), params in sorted(groups.items())]


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = parameter_groups(model, recipe)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)
    raise ValueError(f"make_optimizer: optimizer must be 'adamw' or 'sgd', got {recipe.optimizer!r}")


def learning_rate(recipe: Recipe, iteration: int) -> float:
    """The base learning rate at ``iteration`` (0-based): mmseg's poly schedule
    (lr - min_lr) * (1 - it / max_it) ** power + min_lr, times the linear warm-up factor
    1 - (1 - it / warmup_iters) * (1 - warmup_ratio) during the first warmup_iters iterations."""
    progress = min(iteration, recipe.iterations) / recipe.iterations
    lr = (recipe.lr - recipe.min_lr) * (1 - progress) ** recipe.poly_power + recipe.min_lr
    if iteration < recipe.warmup_iters:
        lr *= 1 - (1 - iteration / recipe.warmup_iters) * (1 - recipe.warmup_ratio)
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, recipe: Recipe, iteration: int) -> float:
    lr = learning_rate(recipe, iteration)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    return lr
