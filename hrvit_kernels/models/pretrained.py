"""Initialising a segmentor's backbone from an ImageNet checkpoint, for fine-tuning.

- a ViT-L/16 in timm's naming (``blocks.{i}.attn.qkv``, ...) or in mmseg's converted naming
  (``layers.{i}.attn.attn.in_proj_weight``, ...), into SegViT's mmseg-style encoder or SETR's timm-style
  one: names converted, the position-embedding grid resized as each release did (bicubic for SegViT,
  bilinear for SETR), the classifier (``head.*``) and the final norm dropped;
- an HRViT classifier checkpoint into an HRViT backbone (its ``head.*`` dropped).

Every encoder parameter (patch embedding, position embedding, class token, blocks) must come from the
checkpoint with a matching shape; the backbone's other parameters (SETR-MLA's neck) keep their
initialisation and are listed in the returned report. On a mismatch the model is left unchanged.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from hrvit_kernels.checkpoint import CheckpointMismatchError, describe_keys, extract_state_dict, read_checkpoint
from hrvit_kernels.models._vit_common import resize_pos_embed

# timm name -> mmseg name, per block (``{i}`` the block index), and outside the blocks.
_TIMM_TO_MMSEG_BLOCK = {
    "norm1": "ln1", "attn.qkv.weight": "attn.attn.in_proj_weight", "attn.qkv.bias": "attn.attn.in_proj_bias",
    "attn.proj": "attn.attn.out_proj", "norm2": "ln2", "mlp.fc1": "ffn.layers.0.0", "mlp.fc2": "ffn.layers.1",
}
_TIMM_TO_MMSEG_TOP = {"patch_embed.proj": "patch_embed.projection", "norm": "ln1"}
_CLASSIFIER = re.compile(r"^(head|fc_norm|pre_logits)\.")
_FINAL_NORM = {"timm": "norm.", "mmseg": "ln1."}


def _rename(key: str, block_map: dict, top_map: dict, block_prefix: tuple[str, str]) -> str:
    source, target = block_prefix
    match = re.match(rf"^{source}\.(\d+)\.(.+)$", key)
    if match:
        index, rest = match.groups()
        for old, new in block_map.items():
            if rest == old or rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
        return f"{target}.{index}.{rest}"
    for old, new in top_map.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    return key


def _naming(state: dict) -> str:
    if any(re.match(r"^blocks\.\d+\.attn\.qkv\.", k) for k in state):
        return "timm"
    if any(re.match(r"^layers\.\d+\.attn\.attn\.in_proj_", k) for k in state):
        return "mmseg"
    return "other"


def _convert(state: dict, source: str, target: str) -> dict:
    if source == target or "other" in (source, target):
        return state
    if source == "timm":
        return {_rename(k, _TIMM_TO_MMSEG_BLOCK, _TIMM_TO_MMSEG_TOP, ("blocks", "layers")): v for k, v in state.items()}
    back = {v: k for k, v in _TIMM_TO_MMSEG_BLOCK.items()}
    top = {v: k for k, v in _TIMM_TO_MMSEG_TOP.items()}
    return {_rename(k, back, top, ("layers", "blocks")): v for k, v in state.items()}


def _is_encoder_key(key: str) -> bool:
    return key in ("cls_token", "pos_embed") or re.match(r"^(patch_embed|blocks|layers|stem|features|branches)\.",
                                                        key) is not None


def load_pretrained_backbone(model: nn.Module, checkpoint, trusted: bool = False) -> str:
    """Loads an ImageNet checkpoint (a path or a read object) into ``model.backbone`` (or ``model`` itself when
    it has no ``backbone``) as described above; returns a report (detected format and naming, what was
    resized, dropped and left initialised)."""
    if isinstance(checkpoint, (str, bytes)) or hasattr(checkpoint, "__fspath__"):
        checkpoint = read_checkpoint(checkpoint, trusted)
    state, fmt = extract_state_dict(checkpoint)
    backbone = getattr(model, "backbone", model)
    expected = backbone.state_dict()
    source, target = _naming(state), _naming(expected)
    dropped = [k for k in state if _CLASSIFIER.match(k)]
    state = _convert({k: v for k, v in state.items() if k not in dropped}, source, target)
    # The classifier's final norm, where the backbone has none (the releases' segmentation ViTs).
    final_norm = [k for k in state if k.startswith(_FINAL_NORM.get(target, "\0")) and k not in expected]
    dropped += final_norm
    state = {k: v for k, v in state.items() if k not in final_norm}
    notes = []
    if "pos_embed" in state and "pos_embed" in expected and state["pos_embed"].shape != expected["pos_embed"].shape:
        mode = "bilinear" if target == "timm" else "bicubic"  # SETR's release / SegViT's (mmseg's)
        pos, want = state["pos_embed"], expected["pos_embed"]
        extra = 1  # the class token's entry
        old, new = pos.shape[1] - extra, want.shape[1] - extra
        if math.isqrt(old) ** 2 != old or math.isqrt(new) ** 2 != new or pos.shape[2] != want.shape[2]:
            raise CheckpointMismatchError(f"load_pretrained_backbone: position embeddings {tuple(pos.shape)} cannot "
                                          f"be resized to {tuple(want.shape)}. The model was not changed.")
        side = math.isqrt(new)
        state["pos_embed"] = resize_pos_embed(pos, (side, side), mode, num_extra=extra)
        notes.append(f"pos_embed resized {math.isqrt(old)}x{math.isqrt(old)} -> {side}x{side} ({mode})")
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in state
             if k in expected and state[k].shape != expected[k].shape]
    missing_encoder = [k for k in expected if _is_encoder_key(k) and k not in state]
    if unexpected or wrong or missing_encoder:
        raise CheckpointMismatchError(
            f"load_pretrained_backbone: the checkpoint ({fmt}, {source} naming) does not fit the "
            f"{type(backbone).__name__} backbone ({target} naming): "
            f"{describe_keys('encoder keys missing', missing_encoder)}; {describe_keys('unexpected', unexpected)}; "
            f"{describe_keys('wrongly shaped (checkpoint vs model)', wrong)}. The model was not changed.")
    with torch.no_grad():
        backbone.load_state_dict(state, strict=False)
    kept = [k for k in expected if k not in state]
    return (f"{fmt}, {source} naming -> {target}: {len(state)} tensors loaded" + "".join(f"; {n}" for n in notes)
            + (f"; dropped {len(dropped)} ({', '.join(dropped[:4])}{', ...' if len(dropped) > 4 else ''})"
               if dropped else "")
            + (f"; {len(kept)} backbone tensors keep their initialisation ({', '.join(kept[:3])}"
               f"{', ...' if len(kept) > 3 else ''})" if kept else ""))
