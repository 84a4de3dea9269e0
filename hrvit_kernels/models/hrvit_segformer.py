"""HRViT backbones with the SegFormer head, as trained in the release (ADE20K defaults)."""
from __future__ import annotations

from hrvit_kernels.models.cards import model_card
from hrvit_kernels.models.heads import SegFormerHead
from hrvit_kernels.models.hrvit import VARIANTS, HRViT
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.models.segmentor import EncoderDecoder

def _hrvit_segformer(variant: str, num_classes: int = 150, head_channels: int | None = None,
                     **backbone_overrides) -> EncoderDecoder:
    backbone = HRViT(VARIANTS[variant], **backbone_overrides)
    # The release's b2 config declares 192 channels for level 2; the backbone really has 240.
    channels = head_channels or model_card(f"hrvit_{variant}_segformer").decode_channels
    head = SegFormerHead(backbone.out_channels, channels, num_classes)
    return EncoderDecoder(backbone, head)


@register_model
def hrvit_b1_segformer(**overrides) -> EncoderDecoder:
    return _hrvit_segformer("b1", **overrides)


@register_model
def hrvit_b2_segformer(**overrides) -> EncoderDecoder:
    return _hrvit_segformer("b2", **overrides)


@register_model
def hrvit_b3_segformer(**overrides) -> EncoderDecoder:
    return _hrvit_segformer("b3", **overrides)
