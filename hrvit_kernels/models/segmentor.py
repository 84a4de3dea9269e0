"""Encoder-decoder segmentor: ``backbone``, ``decode_head`` and optional ``auxiliary_head`` submodules
(mmseg checkpoint names)."""
from __future__ import annotations

import torch
from torch import nn

from hrvit_kernels.models._init import keep_gradient_layout
from hrvit_kernels.ops import resize_sum
from hrvit_kernels.ops._checks import sizes_are_traced


def _resize(logits: torch.Tensor, size) -> torch.Tensor:
    """Bilinear (align_corners False) to the input size; under the reference backend resize_sum is
    the release's F.interpolate call."""
    if not sizes_are_traced() and logits.shape[-2:] == tuple(size):  # a traced program resizes always
        return logits
    return resize_sum([logits], size)


class EncoderDecoder(nn.Module):
    """forward(x) in eval mode: class scores (B, num_classes, H, W) at the input resolution.
    In training mode: a head that returns a dict (SegViT) gives that dict; otherwise the main logits at
    the input resolution, or dict(pred=..., aux=[...]) when there are auxiliary heads."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head=None):
        """``auxiliary_head``: a list of heads (keys ``auxiliary_head.{i}.*``) or one head (keys
        ``auxiliary_head.*``), as mmseg builds a list or a single dict."""
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        if auxiliary_head is not None:
            single = isinstance(auxiliary_head, nn.Module) and not isinstance(auxiliary_head, nn.ModuleList)
            self.auxiliary_head = auxiliary_head if single else nn.ModuleList(auxiliary_head)
        keep_gradient_layout(self)

    def encode_decode(self, x: torch.Tensor):
        """The decode head's output at its own resolution."""
        return self.decode_head(self.backbone(x))

    def forward(self, x: torch.Tensor):
        features = self.backbone(x)
        out = self.decode_head(features)
        if isinstance(out, dict):
            return out
        pred = _resize(out, x.shape[-2:])
        if not self.training or not hasattr(self, "auxiliary_head"):
            return pred
        heads = self.auxiliary_head if isinstance(self.auxiliary_head, nn.ModuleList) else [self.auxiliary_head]
        return dict(pred=pred, aux=[_resize(head(features), x.shape[-2:]) for head in heads])
