"""SETR's decode heads (Naive, PUP, MLA) and their auxiliary heads, with the release's parameter names.
Each has the unused ``conv_seg`` of mmseg's base head, which the released checkpoints contain."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _up(x: torch.Tensor, scale: int | None = None, size=None, align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=size, scale_factor=scale, mode="bilinear", align_corners=align_corners)


class _BaseHead(nn.Module):
    def __init__(self, num_classes: int, img_size: int, base_channels: int = 512):
        super().__init__()
        self.num_classes, self.img_size = num_classes, img_size
        self.conv_seg = nn.Conv2d(base_channels, num_classes, 1)  # in the checkpoints, not used

    @staticmethod
    def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SETRUpHead(_BaseHead):
    """Naive and PUP heads: LayerNorm on the tokens of ``in_index``, then ``num_convs`` conv + BN + ReLU
    (kernel ``kernel_size``) each followed by bilinear x``up_scale`` except the last, a 1x1 conv to the
    classes and the final up-sampling, to ``img_size`` in all (align_corners False).
    Naive: num_convs=1, kernel 1, then x16. PUP: num_convs=4, kernel 3, x2 between, x2 after the
    classifier. Auxiliary PUP heads: num_convs=1, kernel 3, x4, classifier, resize to img_size."""

    def __init__(self, in_channels: int = 1024, channels: int = 256, num_classes: int = 150, img_size: int = 512,
                 num_convs: int = 1, kernel_size: int = 1, up_scale: int = 2, in_index: int = -1,
                 upsample_before_classifier: int | None = None, patch_size: int = 16):
        super().__init__(num_classes, img_size)
        self.patch_size = patch_size
        self.in_index, self.num_convs, self.up_scale = in_index, num_convs, up_scale
        self.upsample_before_classifier = upsample_before_classifier
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        for i in range(num_convs):
            setattr(self, f"conv_{i}", nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size,
                                                 padding=kernel_size // 2))
        setattr(self, f"conv_{num_convs}", nn.Conv2d(channels, num_classes, 1))
        for i in range(num_convs):
            setattr(self, f"syncbn_fc_{i}", nn.BatchNorm2d(channels))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = self._layer_norm(self.norm, inputs[self.in_index])
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"syncbn_fc_{i}")(getattr(self, f"conv_{i}")(x)))
            if i < self.num_convs - 1:
                x = _up(x, self.up_scale)
        if self.upsample_before_classifier:
            x = _up(x, self.upsample_before_classifier)
        x = getattr(self, f"conv_{self.num_convs}")(x)
        return _up(x, size=tuple(s * self.patch_size for s in inputs[self.in_index].shape[-2:]))


class SETRMLAHead(_BaseHead):
    """Per aggregated level: 3x3 conv 256->128 + BN + ReLU, 3x3 conv 128->128 + BN + ReLU, bilinear x4
    (align_corners True); concatenate the four; 3x3 conv to the classes; bilinear to the input size."""

    def __init__(self, in_channels: int = 256, mla_channels: int = 128, num_classes: int = 150, img_size: int = 512):
        super().__init__(num_classes, img_size)
        self.mlahead = nn.Module()
        for p in (2, 3, 4, 5):
            setattr(self.mlahead, f"head{p}", nn.Sequential(
                nn.Conv2d(in_channels, mla_channels, 3, padding=1, bias=False), nn.BatchNorm2d(mla_channels), nn.ReLU(),
                nn.Conv2d(mla_channels, mla_channels, 3, padding=1, bias=False), nn.BatchNorm2d(mla_channels), nn.ReLU()))
        self.cls = nn.Conv2d(4 * mla_channels, num_classes, 3, padding=1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        levels = [_up(getattr(self.mlahead, f"head{p}")(x), 4, align_corners=True) for p, x in zip((2, 3, 4, 5), inputs)]
        logits = self.cls(torch.cat(levels, dim=1))
        return _up(logits, size=tuple(16 * s for s in inputs[0].shape[-2:]))


class SETRMLAAuxHead(_BaseHead):
    """A 1x1 conv (no bias) from one aggregated level to the classes, resized to the input size."""

    def __init__(self, in_channels: int = 256, num_classes: int = 150, img_size: int = 512, in_index: int = 0):
        super().__init__(num_classes, img_size)
        self.in_index = in_index
        self.aux = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[self.in_index]
        return _up(self.aux(x), size=tuple(16 * s for s in x.shape[-2:]))
