"""SETR-HLG (the SETR journal extension): the HLG backbone with HLGUPHead and an FCN auxiliary head on stage 3
(ADE20K defaults: 512 x 512 crops, 150 classes; Cityscapes through ``num_classes=19`` and the recipe).
``create_model(name, num_classes=..., backbone=dict(drop_path_rate=..., depths=...), decode_head=dict(...),
auxiliary_head=dict(...))`` overrides constructor arguments by the release's keyword names."""
from __future__ import annotations

from hrvit_kernels.models.heads.hlg_up import FCNHead, HLGUPHead
from hrvit_kernels.models.hlg import HLGBackbone, variant_config
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.models.segmentor import EncoderDecoder


def _setr_hlg(variant: str, num_classes: int = 150, backbone: dict | None = None, decode_head: dict | None = None,
              auxiliary_head: dict | None = None) -> EncoderDecoder:
    backbone_args = dict(backbone or {})
    config = variant_config(variant, backbone_args.pop("depths", None))
    encoder = HLGBackbone(config, **backbone_args)
    widths = config.widths
    head = HLGUPHead(**{"in_channels": widths, "num_classes": num_classes, **(decode_head or {})})
    aux = FCNHead(**{"in_channels": widths[2], "num_classes": num_classes, **(auxiliary_head or {})})
    return EncoderDecoder(encoder, head, aux)


@register_model
def setr_hlg_small(**overrides) -> EncoderDecoder:
    return _setr_hlg("small", **overrides)


@register_model
def setr_hlg_medium(**overrides) -> EncoderDecoder:
    return _setr_hlg("medium", **overrides)


@register_model
def setr_hlg_large(**overrides) -> EncoderDecoder:
    return _setr_hlg("large", **overrides)
