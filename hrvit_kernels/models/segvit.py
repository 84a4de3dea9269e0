"""SegViT (Zhang et al., NeurIPS 2022): plain ViT-L with the ATM decoder, and the Shrunk structure.

Inputs are expected normalised as the release does: (pixel - 127.5) / 127.5.
``create_model(name, img_size=..., num_classes=..., backbone=dict(...), decode_head=dict(...))``
overrides constructor arguments by their release names.
"""
from __future__ import annotations

from hrvit_kernels.models.cards import model_card
from hrvit_kernels.models.heads.atm import ATMHead, ShrunkATMHead
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.models.segmentor import EncoderDecoder
from hrvit_kernels.models.vit_mmseg import VisionTransformer

def _segvit(dataset: str, shrunk: bool, img_size: int | None = None, num_classes: int | None = None,
            backbone: dict | None = None, decode_head: dict | None = None) -> EncoderDecoder:
    card = model_card(f"segvit_{'shrunk_' if shrunk else ''}vit_l_{dataset}")
    img_size, num_classes = img_size or card.input_size, num_classes or card.num_classes
    backbone_args = dict(img_size=img_size, out_indices=(7, 23) if shrunk else (7, 15, 23),
                         shrink_idx=8 if shrunk else None)
    backbone_args.update(backbone or {})
    head_args = dict(img_size=img_size, num_classes=num_classes, in_channels=backbone_args.get("embed_dims", 1024))
    head_args.update(decode_head or {})
    head = ShrunkATMHead(**head_args) if shrunk else ATMHead(**head_args)
    return EncoderDecoder(VisionTransformer(**backbone_args), head)


@register_model
def segvit_vit_l_ade20k(**overrides) -> EncoderDecoder:
    return _segvit("ade20k", False, **overrides)


@register_model
def segvit_vit_l_coco_stuff(**overrides) -> EncoderDecoder:
    return _segvit("coco_stuff", False, **overrides)


@register_model
def segvit_vit_l_pascal_context(**overrides) -> EncoderDecoder:
    return _segvit("pascal_context", False, **overrides)


@register_model
def segvit_shrunk_vit_l_ade20k(**overrides) -> EncoderDecoder:
    return _segvit("ade20k", True, **overrides)


@register_model
def segvit_shrunk_vit_l_coco_stuff(**overrides) -> EncoderDecoder:
    return _segvit("coco_stuff", True, **overrides)


@register_model
def segvit_shrunk_vit_l_pascal_context(**overrides) -> EncoderDecoder:
    return _segvit("pascal_context", True, **overrides)
