"""Training recipes: each registered segmentor's default equals its release's (optimiser, parameter-wise
rules, schedule, crop, iterations, batch, losses); any field can be overridden."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hrvit_kernels.models.cards import model_card


@dataclass
class Recipe:
    model: str
    dataset: str
    crop: int
    iterations: int
    batch_size: int                         # per process (the releases: 2 per GPU x 8 GPUs)
    optimizer: str                          # "adamw" | "sgd"
    lr: float
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    head_lr_mult: float = 10.0              # parameters whose name contains "head"
    no_decay_keywords: tuple[str, ...] = ("norm",)
    poly_power: float = 1.0
    min_lr: float = 0.0
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    grad_clip: float | None = None          # max L2 norm of all gradients
    loss: str = "ce"                        # "ce" (with auxiliary heads' aux_weight) | "atm"
    aux_weight: float = 0.4
    sync_bn: bool = True
    with_cp: bool = False
    amp: str | None = None                  # None (fp32) | "bf16" | "fp16" (CUDA, with a gradient scaler)
    seed: int = 0
    workers: int = 2
    log_interval: int = 50
    val_interval: int = 16000
    checkpoint_interval: int = 16000
    keep_checkpoints: int = 3
    model_overrides: dict = field(default_factory=dict)

    def replace(self, **overrides) -> "Recipe":
        return replace_fields(self, overrides)


def replace_fields(recipe, overrides: dict):
    """A copy of a recipe dataclass with ``overrides``; an unknown field is refused by name."""
    names = {f.name for f in dataclasses.fields(recipe)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{type(recipe).__name__}: unknown field(s) {', '.join(unknown)}; "
                         f"fields: {', '.join(sorted(names))}")
    return dataclasses.replace(recipe, **overrides)


def default_recipe(name: str) -> Recipe:
    """The release's recipe of a registered segmentor (recipes of the releases, ADE20K-family datasets)."""
    card = model_card(name)
    if card.task != "segmentation":
        raise ValueError(f"default_recipe: {name!r} is a {card.task} model; segmentors have these recipes "
                         f"(classifiers: default_classification_recipe)")
    crop = card.input_size  # a segmentor's card holds its training crop
    if card.family == "hrvit":
        return Recipe(name, card.dataset, crop, 160_000, 2, "adamw", 6e-5, 0.01, warmup_iters=1500,
                      head_lr_mult=1.0 if name.startswith("hrvit_b3") else 10.0)
    if card.family == "segvit":
        decay = {"ade20k": 0.01, "coco_stuff": 0.02, "pascal_context": 0.03}[card.dataset]
        iterations = 160_000 if card.dataset == "ade20k" else 80_000
        return Recipe(name, card.dataset, crop, iterations, 2, "adamw", 2e-5, decay, no_decay_keywords=("norm", "ln"),
                      poly_power=2.0 if card.dataset == "coco_stuff" else 1.0, warmup_iters=1500, grad_clip=35.0,
                      loss="atm", sync_bn=False)
    if card.family == "hlg":  # SETR-HLG (spec hlg.md section 5): AdamW without weight decay, head lr x10
        return Recipe(name, card.dataset, crop, 160_000, 2, "adamw", 6e-5, 0.0, warmup_iters=1500)
    lr = 0.01 if "naive" in name else 0.001
    return Recipe(name, card.dataset, crop, 160_000, 2, "sgd", lr, 0.0, poly_power=0.9, min_lr=1e-4)
