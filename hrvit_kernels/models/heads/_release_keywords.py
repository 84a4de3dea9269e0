"""Constructor keywords of the releases' heads (mmseg 0.x's BaseDecodeHead and the releases' own) that a
head here accepts without effect: they configure what the package keeps elsewhere (losses in
hrvit_kernels.models.losses, samplers, the training loop) or what the releases' forwards never use. A
release configuration passes them; anything else is a mistake and is refused by name."""
from __future__ import annotations

NO_EFFECT = frozenset({
    "type", "norm_layer", "conv_cfg", "act_cfg", "dropout_ratio", "loss_decode", "ignore_index", "sampler",
    "input_transform", "init_cfg", "align_corners", "norm_cfg",
})
_NORMS = ("BN", "SyncBN", "BN2d")  # BatchNorm2d here; nn.SyncBatchNorm.convert_sync_batchnorm makes it SyncBN


def check_release_keywords(head: str, extra: dict, also: frozenset = frozenset()) -> None:
    """Raise for keywords neither the head nor the release accepts, and for release settings whose meaning
    differs from what the head builds (a normalisation other than BatchNorm, an activation other than ReLU)."""
    unknown = sorted(set(extra) - NO_EFFECT - also)
    if unknown:
        raise TypeError(f"{head}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the release's "
                        f"keywords without effect here are {', '.join(sorted(NO_EFFECT | also))}")
    norm = extra.get("norm_cfg")
    if norm is not None and (not isinstance(norm, dict) or norm.get("type") not in _NORMS):
        raise ValueError(f"{head}: argument 'norm_cfg' must name one of {', '.join(_NORMS)} (the head's "
                         f"BatchNorm2d), got {norm!r}")
    act = extra.get("act_cfg")
    if act is not None and (not isinstance(act, dict) or act.get("type") != "ReLU"):
        raise ValueError(f"{head}: argument 'act_cfg' must be dict(type='ReLU') (the head's activation), got {act!r}")
