"""Encoder-decoder segmentor: ``backbone`` and ``decode_head`` submodules (mmseg checkpoint names)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EncoderDecoder(nn.Module):
    """forward(x) returns class logits (B, num_classes, H, W) at the input resolution."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head

    def encode_decode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the decode head's resolution (stride 4 for the SegFormer head)."""
        return self.decode_head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.encode_decode(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
