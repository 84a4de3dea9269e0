"""SETR (Zheng et al., CVPR 2021): ViT-L/16 with the Naive, PUP and MLA decoders and their auxiliary heads
(ADE20K defaults: 512 x 512, 150 classes). Inputs are expected normalised with the ImageNet mean/std.
``create_model(name, img_size=..., num_classes=..., backbone=dict(...), decode_head=dict(...),
auxiliary_head=dict(...) or [dict(...), ...])`` overrides constructor arguments by their release names, with
the release's meaning (a release configuration's head dicts can be passed as they are; ``in_index`` of the
Naive and PUP heads is a ViT layer, which must be one of the backbone's ``out_indices``).
"""
from __future__ import annotations

from hrvit_kernels.models.heads.setr import SETRMLAAuxHead, SETRMLAHead, SETRUpHead
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.models.segmentor import EncoderDecoder
from hrvit_kernels.models.vit_timm import SETRVisionTransformer


# The release's ADE20K heads, apart from the sizes set from the backbone: (main head, auxiliary heads).
_RELEASE_HEADS = {
    "naive": (dict(num_conv=2, num_upsampe_layer=1, conv3x3_conv1x1=False),
              dict(num_conv=2, num_upsampe_layer=1, conv3x3_conv1x1=False)),
    "pup": (dict(num_conv=4, num_upsampe_layer=4), dict(num_conv=2, num_upsampe_layer=2, conv3x3_conv1x1=True)),
    "mla": ({}, {}),
}
_AUX_COUNT = {"naive": 3, "pup": 4, "mla": 4}


def _layer_position(head: str, layer: int, out_indices, depth: int) -> int:
    """The release's in_index (a layer of the ViT, whose every layer it outputs) as the position of that
    layer among the backbone's out_indices (the layers it outputs here)."""
    absolute = layer + depth if layer < 0 else layer
    if absolute not in out_indices:
        raise ValueError(f"{head}: in_index = {layer} is layer {absolute}, not one of the backbone's out_indices "
                         f"{tuple(out_indices)}; add it to backbone=dict(out_indices=...)")
    return list(out_indices).index(absolute)


def _setr(kind: str, img_size: int = 512, num_classes: int = 150, backbone: dict | None = None,
          decode_head: dict | None = None, auxiliary_head: dict | list | None = None) -> EncoderDecoder:
    mla = kind == "mla"
    backbone_args = dict(img_size=img_size, out_indices=(5, 11, 17, 23) if mla else (9, 14, 19, 23), mla=mla)
    backbone_args.update(backbone or {})
    encoder = SETRVisionTransformer(**backbone_args)
    layers, depth = encoder.out_indices, len(encoder.blocks)
    embed_dim = backbone_args.get("embed_dim", 1024)
    main_defaults, aux_defaults = _RELEASE_HEADS[kind]
    common = dict(num_classes=num_classes, img_size=img_size, in_channels=embed_dim)
    if mla:
        mla_channels = backbone_args.get("mla_channels", 256)
        head = SETRMLAHead(**{**common, "mla_channels": mla_channels, **(decode_head or {})})
        aux_common = dict(common, in_channels=mla_channels)
    else:
        common["embed_dim"] = embed_dim
        args = {**common, **main_defaults, "in_index": layers[-1], **(decode_head or {})}
        args["in_index"] = _layer_position("decode_head", args["in_index"], layers, depth)
        head = SETRUpHead(**args)
        aux_common = common
    if isinstance(auxiliary_head, (list, tuple)):  # the release's form: one dict per head
        aux_configs = [dict(config) for config in auxiliary_head]
    else:
        aux_configs = [{"in_index": i if mla else layers[i], **(auxiliary_head or {})}
                       for i in range(_AUX_COUNT[kind])]
    aux_heads = []
    for config in aux_configs:
        args = {**aux_common, **aux_defaults, **config}
        if not mla:
            args["in_index"] = _layer_position("auxiliary_head", args.get("in_index", -1), layers, depth)
        aux_heads.append((SETRMLAAuxHead if mla else SETRUpHead)(**args))
    return EncoderDecoder(encoder, head, aux_heads)


@register_model
def setr_naive_vit_l(**overrides) -> EncoderDecoder:
    return _setr("naive", **overrides)


@register_model
def setr_pup_vit_l(**overrides) -> EncoderDecoder:
    return _setr("pup", **overrides)


@register_model
def setr_mla_vit_l(**overrides) -> EncoderDecoder:
    return _setr("mla", **overrides)
