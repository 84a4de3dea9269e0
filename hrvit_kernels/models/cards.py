"""One card per registered model: the facts about it that are not its architecture, in one place.

``params``: exact parameter count of the released state dict (ours is equal; tests assert it).
``release_gmacs``: multiply-adds (G) the authors' release gives when measured with fvcore (1 multiply-add
= 1, batch 1) at ``input_size``; segmentors are measured to the decode head's output (before the final
resize; SETR without its auxiliary heads). ``paper_*``: as printed in the paper or the release README
(HRViT's FLOP counter is unknown; SegViT's and SETR's GFLOPs are fvcore multiply-adds).
``paper_top1``: the ImageNet top-1 accuracy the release reports (classifiers).
``input_size``: the training crop (square), where multiply-adds are counted. ``mean`` / ``std``: the
normalisation of 0-255 RGB inputs. ``test_mode``: "whole" image or "slide" windows of ``test_crop`` pixels
every ``test_stride`` (recipes of the releases); backbones have none. ``dataset`` / ``num_classes``: what a
segmentor's head predicts by default.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
HALF_RANGE = (127.5, 127.5, 127.5)  # SegViT: mean = std = 127.5, pixels in [-1, 1]


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str                                 # "hrvit" | "segvit" | "setr" | "hlg"
    input_size: int
    release_gmacs: float | None                 # None: the release cannot run this model (SETR-HLG)
    params: int | None = None
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    paper_miou: float | None = None
    dataset: str | None = None                  # "ade20k" | "coco_stuff" | "pascal_context"
    num_classes: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    test_mode: str | None = None                # "whole" | "slide"
    test_crop: int | None = None
    test_stride: int | None = None
    decode_channels: int | None = None          # SegFormer head width (HRViT segmentors)
    paper_top1: float | None = None             # ImageNet classifiers

    @property
    def task(self) -> str:
        """"segmentation" (a dataset's classes), "classification" (ImageNet classes) or "backbone"."""
        if self.dataset is not None:
            return "segmentation"
        return "classification" if self.num_classes else "backbone"


def _hrvit(variant: str, params: int, gmacs: float) -> ModelCard:
    return ModelCard(f"hrvit_{variant}", "hrvit", 512, gmacs, params)


def _hrvit_cls(variant: str, params: int, gmacs: float, top1: float) -> ModelCard:
    return ModelCard(f"hrvit_{variant}_cls", "hrvit", 224, gmacs, params, round(params / 1e6, 1), num_classes=1000,
                     paper_top1=top1)


def _hrvit_segformer(variant, params, gmacs, paper_params_m, paper_gflops, paper_miou, decode_channels):
    return ModelCard(f"hrvit_{variant}_segformer", "hrvit", 512, gmacs, params, paper_params_m, paper_gflops,
                     paper_miou, "ade20k", 150, test_mode="whole", decode_channels=decode_channels)


# SegViT per dataset: (input size = slide crop, classes, slide stride).
SEGVIT_DATASETS = {"ade20k": (640, 150, 608), "coco_stuff": (512, 171, 341), "pascal_context": (480, 60, 320)}


def _segvit(shrunk: bool, dataset: str, gmacs: float, miou: float, params: int | None = None) -> ModelCard:
    size, classes, stride = SEGVIT_DATASETS[dataset]
    name = f"segvit_{'shrunk_' if shrunk else ''}vit_l_{dataset}"
    return ModelCard(name, "segvit", size, gmacs, params, params and round(params / 1e6, 2), gmacs, miou, dataset,
                     classes, HALF_RANGE, HALF_RANGE, "slide", size, stride)


def _setr(kind: str, params: int, gmacs: float, miou: float) -> ModelCard:
    return ModelCard(f"setr_{kind}_vit_l", "setr", 512, gmacs, params, round(params / 1e6, 2), gmacs, miou,
                     "ade20k", 150, test_mode="slide", test_crop=512, test_stride=341)


CARDS: dict[str, ModelCard] = {card.name: card for card in [
    _hrvit("b1", 7_758_008, 10.75),
    _hrvit("b2", 20_310_944, 25.09),
    _hrvit("b3", 25_507_960, 28.73),
    _hrvit_cls("b1", 19_685_152, 2.811, 80.5),
    _hrvit_cls("b2", 32_486_408, 5.344, 82.3),
    _hrvit_cls("b3", 37_870_304, 5.968, 82.8),
    _hrvit_segformer("b1", 8_183_118, 16.00, 8.2, 14.6, 45.88, 256),
    _hrvit_segformer("b2", 20_809_782, 30.48, 20.8, 28.0, 48.76, 256),
    _hrvit_segformer("b3", 28_724_494, 71.01, 28.7, 67.9, 50.20, 768),
    _segvit(False, "ade20k", 637.9, 54.6, 344_305_303),
    _segvit(True, "ade20k", 373.5, 53.9, 344_598_679),
    _segvit(False, "coco_stuff", 383.9, 49.9),
    _segvit(True, "coco_stuff", 224.8, 49.1),
    _segvit(False, "pascal_context", 321.6, 64.1),
    _segvit(True, "pascal_context", 186.9, 62.3),
    _setr("naive", 305_669_296, 362.7, 48.06),
    _setr("pup", 318_307_292, 418.2, 48.62),
    _setr("mla", 310_568_836, 378.7, 48.64),
]}


def _hlg(variant: str, params: int, gmacs: float, paper_params_m: float, paper_gflops: float,
         top1: float) -> ModelCard:
    return ModelCard(f"hlg_{variant}", "hlg", 224, gmacs, params, paper_params_m, paper_gflops, num_classes=1000,
                     paper_top1=top1)


def _setr_hlg(variant: str, params: int | None, miou: float) -> ModelCard:
    return ModelCard(f"setr_hlg_{variant}", "hlg", 512, None, params, paper_miou=miou, dataset="ade20k",
                     num_classes=150, test_mode="slide", test_crop=512, test_stride=341)


# HLG: fvcore multiply-adds of the repaired classification release at 224 (the release runs nothing as
# published); the README's params (M), FLOPs (G) and top-1. SETR-HLG: the README's ADE20K mIoU (no release
# checkpoint, and the segmentation code cannot run, so no release multiply-adds); Small's parameter count
# is the release configuration's (medium / large have no key listing to check against).
CARDS.update({card.name: card for card in [
    _hlg("tiny", 11_035_824, 2.678, 11, 2.1, 81.1),
    _hlg("small", 24_273_004, 5.823, 24, 4.7, 82.3),
    _hlg("medium", 39_978_412, 8.749, 43, 9.0, 83.6),
    _hlg("large", 84_355_640, 17.898, 84, 15.9, 84.1),
    _setr_hlg("small", 38_016_464, 47.3),
    _setr_hlg("medium", None, 49.3),
    _setr_hlg("large", None, 49.8),
]})


def model_card(name: str) -> ModelCard:
    """The card of a registered model."""
    if name not in CARDS:
        raise ValueError(f"model_card: no card for {name!r}; cards exist for: {', '.join(CARDS)}")
    return CARDS[name]
