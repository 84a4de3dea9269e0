"""SegViT's ATM decode head and its Shrunk variant (release keyword and parameter names)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.models._init import init_transformer_weights
from hrvit_kernels.models.heads._release_keywords import check_release_keywords
from hrvit_kernels.modules.atm import ATMDecoder, TransformerDecoder
from hrvit_kernels.ops._checks import sizes_are_traced


def check_segvit_keywords(head: str, extra: dict) -> None:
    """The release's head keywords: mmseg's base-head ones and SegViT's own that select what this package
    does not implement (CE_loss, crop_train) are accepted at their defaults only."""
    for name in ("CE_loss", "crop_train"):
        if extra.get(name):
            raise ValueError(f"{head}: argument '{name}' = {extra[name]!r} selects a release variant not "
                             f"implemented here; accepted: False (the released models' setting)")
    check_release_keywords(head, extra, also=frozenset({"CE_loss", "crop_train", "shrink_ratio", "in_index"}))


def semantic_map(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Class scores per pixel: sum over queries of P(class) (no-object dropped) x sigmoid(mask)."""
    return torch.einsum("bqc,bqhw->bchw", class_logits.softmax(-1)[..., :-1], mask_logits.sigmoid())


class ATMHead(nn.Module):
    """Class queries pass ``use_stages`` stages of ATM decoder layers, deepest feature first; each
    stage's last layer gives mask logits, accumulated over stages; class logits come from each stage's
    final queries. Eval: the (B, num_classes, H, W) score map at ``patch_size`` x the token grid.
    Training: dict(pred_logits, pred_masks, pred, aux_outputs=[dict(pred_logits, pred_masks), ...])."""

    def __init__(self, img_size: int = 640, in_channels: int = 1024, channels: int = 512, num_classes: int = 150,
                 num_layers: int = 3, num_heads: int = 16, use_stages: int = 3, embed_dims: int = 512,
                 use_proj: bool = True, patch_size: int = 16, **release_keywords):
        super().__init__()
        check_segvit_keywords("ATMHead", release_keywords)
        if embed_dims % num_heads:
            raise ValueError(f"ATMHead: embed_dims = {embed_dims} is not divisible by num_heads = {num_heads}")
        self.img_size, self.num_classes, self.use_stages, self.use_proj = img_size, num_classes, use_stages, use_proj
        self.channels, self.patch_size = channels, patch_size
        for i in range(1, use_stages + 1):
            if use_proj:
                setattr(self, f"input_proj_{i}", nn.Linear(in_channels, embed_dims))
                setattr(self, f"proj_norm_{i}", nn.LayerNorm(embed_dims))
            setattr(self, f"decoder_{i}", ATMDecoder(embed_dims, num_heads, num_layers, 4 * embed_dims))
        self.q = nn.Embedding(num_classes, embed_dims)
        self.class_embed = nn.Linear(embed_dims, num_classes + 1)
        self.init_weights()

    def init_weights(self) -> None:
        init_transformer_weights(self)
        nn.init.normal_(self.q.weight)

    def _memory(self, i: int, feature: torch.Tensor) -> torch.Tensor:
        tokens = feature.flatten(2).transpose(1, 2) if feature.dim() == 4 else feature
        if self.use_proj:
            tokens = getattr(self, f"proj_norm_{i}")(getattr(self, f"input_proj_{i}")(tokens))
        return tokens

    def forward(self, inputs: list[torch.Tensor]):
        if len(inputs) < self.use_stages:
            raise ValueError(f"ATMHead: expected {self.use_stages} feature maps, got {len(inputs)}")
        features = list(inputs[-self.use_stages:])[::-1]  # deepest first
        B = features[0].shape[0]
        queries = self.q.weight.unsqueeze(0).expand(B, -1, -1)
        stage_outputs = []  # (class logits, accumulated mask logits (B, N, h, w)) per stage
        accumulated = None
        for i, feature in enumerate(features, start=1):
            grid = feature.shape[-2:]
            queries, mask_logits = getattr(self, f"decoder_{i}")(queries, self._memory(i, feature))[-1]
            masks = mask_logits.unflatten(-1, tuple(grid))
            if accumulated is not None:
                if sizes_are_traced() or accumulated.shape[-2:] != masks.shape[-2:]:  # identity at equal sizes
                    accumulated = F.interpolate(accumulated, size=masks.shape[-2:], mode="bilinear", align_corners=False)
                masks = accumulated + masks
            accumulated = masks
            stage_outputs.append((self.class_embed(queries), masks))
        return self.outputs(stage_outputs)

    def outputs(self, stage_outputs):
        class_logits, masks = stage_outputs[-1]
        size = tuple(s * self.patch_size for s in masks.shape[-2:])
        pred_masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        pred = semantic_map(class_logits, pred_masks)
        if not self.training:
            return pred
        aux = [dict(pred_logits=c, pred_masks=m) for c, m in stage_outputs[:-1]]
        return dict(pred_logits=class_logits, pred_masks=pred_masks, pred=pred, aux_outputs=aux)


class ShrunkATMHead(nn.Module):
    """SegViT-Shrunk (the release's TPNATMHead): query-based up-sampling by (S/16)^2 grid queries through
    3 standard decoder layers on the projected shallow tokens and 3 on the projected deep tokens (whose
    grid is the shallow one down-sampled by 2, the backbone's query-based down-sampling), then a
    single-stage ATM head (no input projection) on the resulting map; each of its layers yields class
    and mask logits, the last the prediction, the others auxiliary outputs. ``shrink_ratio`` is the
    release's keyword (default 16), which its forward does not use: accepted, without effect."""

    DEEP_GRID_STRIDE = 2  # the backbone's query-based down-sampling

    def __init__(self, img_size: int = 640, in_channels: int = 1024, channels: int = 512, num_classes: int = 150,
                 num_layers: int = 3, num_heads: int = 16, use_stages: int = 2, embed_dims: int = 512,
                 use_proj: bool = True, shrink_ratio: int | None = 16, patch_size: int = 16, **release_keywords):
        super().__init__()
        check_segvit_keywords("ShrunkATMHead", release_keywords)
        self.grid, self.use_stages, self.num_classes = img_size // patch_size, use_stages, num_classes
        for i in range(1, use_stages + 1):
            setattr(self, f"input_proj_{i}", nn.Linear(in_channels, embed_dims))
            setattr(self, f"proj_norm_{i}", nn.LayerNorm(embed_dims))
            setattr(self, f"decoder_{i}", TransformerDecoder(embed_dims, num_heads, num_layers, 4 * embed_dims))
        self.q = nn.Embedding(self.grid * self.grid, embed_dims)
        self.atm = ATMHead(img_size, embed_dims, channels, num_classes, num_layers, num_heads, use_stages=1,
                           embed_dims=embed_dims, use_proj=False, patch_size=patch_size)
        self.init_weights()

    def init_weights(self) -> None:
        init_transformer_weights(self)
        nn.init.normal_(self.q.weight)
        nn.init.normal_(self.atm.q.weight)

    def forward(self, inputs: list[torch.Tensor]):
        shallow, deep = inputs[0], inputs[-1]
        B, _, h, w = shallow.shape
        stride = self.DEEP_GRID_STRIDE
        if tuple(deep.shape[-2:]) != (-(-h // stride), -(-w // stride)):
            raise ValueError(f"ShrunkATMHead: the deep feature's grid {tuple(deep.shape[-2:])} is not the shallow grid "
                             f"{(h, w)} down-sampled by {stride} (the backbone's query-based down-sampling)")
        queries = self.q.weight
        if queries.shape[0] != h * w:  # another input size: resize the grid of queries
            side = self.grid
            queries = F.interpolate(queries.t().reshape(1, -1, side, side), size=(h, w), mode="bilinear",
                                    align_corners=False).flatten(2)[0].t()
        queries = queries.unsqueeze(0).expand(B, -1, -1)
        for i, feature in enumerate((shallow, deep), start=1):
            memory = getattr(self, f"proj_norm_{i}")(getattr(self, f"input_proj_{i}")(feature.flatten(2).transpose(1, 2)))
            queries = getattr(self, f"decoder_{i}")(queries, memory)
        # Single-stage ATM on the up-sampled map: every layer's class and (not accumulated) mask logits.
        atm = self.atm
        class_queries = atm.q.weight.unsqueeze(0).expand(B, -1, -1)
        stage_outputs = [(atm.class_embed(q), m.unflatten(-1, (h, w))) for q, m in atm.decoder_1(class_queries, queries)]
        return atm.outputs(stage_outputs)
