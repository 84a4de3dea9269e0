"""SETR (Zheng et al., CVPR 2021): ViT-L/16 with the Naive, PUP and MLA decoders and their auxiliary heads
(ADE20K defaults: 512 x 512, 150 classes). Inputs are expected normalised with the ImageNet mean/std.
``create_model(name, img_size=..., num_classes=..., backbone=dict(...), decode_head=dict(...),
auxiliary_head=dict(...))`` overrides constructor arguments by their release names.
"""
from __future__ import annotations

from hrvit_kernels.models.heads.setr import SETRMLAAuxHead, SETRMLAHead, SETRUpHead
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.models.segmentor import EncoderDecoder
from hrvit_kernels.models.vit_timm import SETRVisionTransformer


def _setr(kind: str, img_size: int = 512, num_classes: int = 150, backbone: dict | None = None,
          decode_head: dict | None = None, auxiliary_head: dict | None = None) -> EncoderDecoder:
    mla = kind == "mla"
    backbone_args = dict(img_size=img_size, out_indices=(5, 11, 17, 23) if mla else (9, 14, 19, 23), mla=mla)
    backbone_args.update(backbone or {})
    embed_dim = backbone_args.get("embed_dim", 1024)
    common = dict(num_classes=num_classes, img_size=img_size)
    if kind == "naive":
        head_args = dict(in_channels=embed_dim, num_convs=1, kernel_size=1)
        aux_args, aux_levels = dict(in_channels=embed_dim, num_convs=1, kernel_size=1), (0, 1, 2)
    elif kind == "pup":
        head_args = dict(in_channels=embed_dim, num_convs=4, kernel_size=3, up_scale=2)
        aux_args, aux_levels = dict(in_channels=embed_dim, num_convs=1, kernel_size=3, upsample_before_classifier=4), (0, 1, 2, 3)
    else:
        head_args, aux_args, aux_levels = {}, {}, (0, 1, 2, 3)
    head_args.update(common, **(decode_head or {}))
    aux_args.update(common, **(auxiliary_head or {}))
    head_cls, aux_cls = (SETRMLAHead, SETRMLAAuxHead) if mla else (SETRUpHead, SETRUpHead)
    aux = [aux_cls(**aux_args, in_index=i) for i in aux_levels]
    return EncoderDecoder(SETRVisionTransformer(**backbone_args), head_cls(**head_args), aux)


@register_model
def setr_naive_vit_l(**overrides) -> EncoderDecoder:
    return _setr("naive", **overrides)


@register_model
def setr_pup_vit_l(**overrides) -> EncoderDecoder:
    return _setr("pup", **overrides)


@register_model
def setr_mla_vit_l(**overrides) -> EncoderDecoder:
    return _setr("mla", **overrides)
