"""SETR's decode heads (Naive, PUP, MLA) and their auxiliary heads, with the release's parameter names and
constructor keywords (VisionTransformerUpHead, VIT_MLAHead, VIT_MLA_AUXIHead, with the release's meaning).
Each has the unused ``conv_seg`` of mmseg's base head (``channels`` -> classes), which the released
checkpoints contain. Outputs are resized to 16 x the token grid (the release resizes to ``img_size``, the
same at the training size; any input size works here)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.models.heads._release_keywords import check_release_keywords
from hrvit_kernels.modules.batchnorm import conv_bn_act


def _up(x: torch.Tensor, scale: int | None = None, size=None, align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=size, scale_factor=scale, mode="bilinear", align_corners=align_corners)


class _BaseHead(nn.Module):
    def __init__(self, name: str, num_classes: int, img_size: int, channels: int, extra: dict,
                 patch_size: int = 16, also: frozenset = frozenset()):
        super().__init__()
        check_release_keywords(name, extra, also)
        self.num_classes, self.img_size, self.patch_size = num_classes, img_size, patch_size
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)  # in the checkpoints, not used

    def _input_size(self, x: torch.Tensor) -> tuple[int, int]:
        return tuple(s * self.patch_size for s in x.shape[-2:])

    @staticmethod
    def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# (num_conv, num_upsampe_layer) -> up-sampling factor after each conv + BN + ReLU layer, and after the
# classifier: the release's three forwards (num_conv=2: one such layer; num_conv=4: four).
_UPSAMPLING = {(2, 1): ([1], None), (2, 2): ([4], None), (4, 4): ([2, 2, 2, 1], 2)}


class SETRUpHead(_BaseHead):
    """The release's VisionTransformerUpHead (Naive and PUP, and their auxiliary heads): LayerNorm on the
    tokens of ``in_index`` (a position in the backbone's outputs: the segmentor builder translates the
    release's layer index), then conv + BN + ReLU layers of ``hidden_channels`` (``conv_i``, ``syncbn_fc_i``)
    and a 1x1 conv to the classes, as the release builds them for ``num_conv`` and ``num_upsampe_layer``:
    num_conv=2: one layer, its conv 3x3 if ``conv3x3_conv1x1`` else 1x1, then bilinear x4 when
    num_upsampe_layer=2 (PUP's auxiliary heads), none when 1 (Naive); num_conv=4, num_upsampe_layer=4 (PUP):
    four layers of 3x3 convs, x2 after each of the first three and after the classifier. Then to the input
    size.
    ``hidden_channels`` (256 in the release, where it is not a keyword) sets the width of small models."""

    def __init__(self, in_channels: int = 1024, channels: int = 512, num_classes: int = 150, in_index: int = -1,
                 img_size: int = 512, embed_dim: int | None = None, num_conv: int = 2,
                 upsampling_method: str = "bilinear", num_upsampe_layer: int = 1, conv3x3_conv1x1: bool = True,
                 align_corners: bool = False, hidden_channels: int = 256, patch_size: int = 16, **release_keywords):
        super().__init__("SETRUpHead", num_classes, img_size, channels, release_keywords, patch_size)
        if upsampling_method != "bilinear":
            raise ValueError(f"SETRUpHead: argument 'upsampling_method' must be 'bilinear' (the release's only "
                             f"implemented method), got {upsampling_method!r}")
        if (num_conv, num_upsampe_layer) not in _UPSAMPLING:
            raise ValueError(f"SETRUpHead: (num_conv, num_upsampe_layer) = {(num_conv, num_upsampe_layer)} is not "
                             f"one the release implements; accepted: {', '.join(map(str, _UPSAMPLING))}")
        self.in_index, self.align_corners = in_index, align_corners
        self.upsampling, self.final_upsampling = _UPSAMPLING[(num_conv, num_upsampe_layer)]
        self.num_layers = len(self.upsampling)
        width = embed_dim or in_channels
        self.norm = nn.LayerNorm(width, eps=1e-6)
        kernel = 3 if num_conv == 4 or conv3x3_conv1x1 else 1
        for i in range(self.num_layers):
            setattr(self, f"conv_{i}", nn.Conv2d(width if i == 0 else hidden_channels, hidden_channels, kernel,
                                                 padding=kernel // 2))
        setattr(self, f"conv_{self.num_layers}", nn.Conv2d(hidden_channels, num_classes, 1))
        for i in range(self.num_layers):
            setattr(self, f"syncbn_fc_{i}", nn.BatchNorm2d(hidden_channels))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        tokens = inputs[self.in_index]
        x = self._layer_norm(self.norm, tokens)
        for i, scale in enumerate(self.upsampling):
            x = conv_bn_act(getattr(self, f"conv_{i}"), getattr(self, f"syncbn_fc_{i}"), x, "relu")
            if scale > 1:
                x = _up(x, scale, align_corners=self.align_corners)
        x = getattr(self, f"conv_{self.num_layers}")(x)
        if self.final_upsampling:
            x = _up(x, self.final_upsampling, align_corners=self.align_corners)
        return _up(x, size=self._input_size(tokens), align_corners=self.align_corners)


class SETRMLAHead(_BaseHead):
    """The release's VIT_MLAHead: per aggregated level (``mla_channels`` wide), 3x3 conv to
    ``mlahead_channels`` + BN + ReLU, 3x3 conv + BN + ReLU, bilinear x4 (align_corners True); concatenate
    the four; 3x3 conv to the classes; bilinear to the input size. ``in_channels`` (the ViT's width) only
    describes the backbone, as in the release."""

    def __init__(self, in_channels: int = 1024, channels: int = 512, num_classes: int = 150, img_size: int = 512,
                 mla_channels: int = 256, mlahead_channels: int = 128, align_corners: bool = False,
                 patch_size: int = 16, **release_keywords):
        # in_index: mmseg's base-head keyword; the head always reads the four aggregated levels.
        super().__init__("SETRMLAHead", num_classes, img_size, channels, release_keywords, patch_size,
                         also=frozenset({"in_index"}))
        self.align_corners = align_corners
        self.mlahead = nn.Module()
        for p in (2, 3, 4, 5):
            setattr(self.mlahead, f"head{p}", nn.Sequential(
                nn.Conv2d(mla_channels, mlahead_channels, 3, padding=1, bias=False), nn.BatchNorm2d(mlahead_channels),
                nn.ReLU(), nn.Conv2d(mlahead_channels, mlahead_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(mlahead_channels), nn.ReLU()))
        self.cls = nn.Conv2d(4 * mlahead_channels, num_classes, 3, padding=1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        levels = [_up(getattr(self.mlahead, f"head{p}")(x), 4, align_corners=True)
                  for p, x in zip((2, 3, 4, 5), inputs)]
        logits = self.cls(torch.cat(levels, dim=1))
        return _up(logits, size=self._input_size(inputs[0]), align_corners=self.align_corners)


class SETRMLAAuxHead(_BaseHead):
    """The release's VIT_MLA_AUXIHead in the form of every release configuration (``in_channels`` = the
    aggregated levels' width): a 1x1 conv (no bias) from level ``in_index`` to the classes, resized to the
    input size."""

    def __init__(self, in_channels: int = 256, channels: int = 512, num_classes: int = 150, img_size: int = 512,
                 in_index: int = 0, align_corners: bool = False, patch_size: int = 16, **release_keywords):
        super().__init__("SETRMLAAuxHead", num_classes, img_size, channels, release_keywords, patch_size)
        self.in_index, self.align_corners = in_index, align_corners
        self.aux = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[self.in_index]
        return _up(self.aux(x), size=self._input_size(x), align_corners=self.align_corners)
