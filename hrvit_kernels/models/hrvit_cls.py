"""HRViT's ImageNet classifiers (the release's HRViT_b{1,2,3}_224): the backbone followed by an HRNet-v2 style
head under ``head`` (keys: the backbone's, then ``head.*``), with the interface timm users expect:
``forward_features`` -> the unpooled (B, 2048, ceil(H/32), ceil(W/32)) map, ``forward_head(x, pre_logits)``
-> pooling, dropout, classifier; ``get_classifier`` / ``reset_classifier`` act on ``head.classifier``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.models.hrvit import VARIANTS, HRViT, HRViTConfig
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.modules import HRViTAttention

HEAD_WIDTHS = (32, 64, 128, 256)  # the head's bottleneck widths P, the same for every variant (outputs 4P)
FEATURES = 2048
PRETRAINED_CFG = dict(input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.9, interpolation="bicubic",
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv="stem.conv1",
                      classifier="head.classifier")


class _Bottleneck(nn.Module):
    """ResNet bottleneck, stride 1: 1x1 -> 3x3 -> 1x1 (x4), a 1x1 conv + BN shortcut."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.downsample(x))


class HRNetClassifierHead(nn.Module):
    """Per branch a bottleneck to 4P channels; merged fine to coarse through stride-2 3x3 convs
    (y = incre_{i+1}(x_{i+1}) + downsamp_i(y)); a 1x1 conv to 2048; global average pooling; dropout; Linear."""

    def __init__(self, in_channels, num_classes: int = 1000, drop_rate: float = 0.1):
        super().__init__()
        widths = [4 * p for p in HEAD_WIDTHS]
        self.incre_modules = nn.ModuleList(nn.Sequential(_Bottleneck(c, p)) for c, p in zip(in_channels, HEAD_WIDTHS))
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1), nn.BatchNorm2d(widths[i + 1]),
                          nn.ReLU()) for i in range(3))
        self.final_layer = nn.Sequential(nn.Conv2d(widths[-1], FEATURES, 1), nn.BatchNorm2d(FEATURES), nn.ReLU())
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(FEATURES, num_classes) if num_classes > 0 else nn.Identity()

    def features(self, maps: list[torch.Tensor]) -> torch.Tensor:
        y = self.incre_modules[0](maps[0])
        for i in range(3):
            y = self.incre_modules[i + 1](maps[i + 1]) + self.downsamp_modules[i](y)
        return self.final_layer(y)

    def forward(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(features.mean((2, 3)))
        return x if pre_logits else self.classifier(x)


class HRViTClassifier(HRViT):
    """The backbone (keys without prefix) and ``head``; PyTorch's default initialisation everywhere except the
    attention's zero ``attn_bn`` (the release applies no initialisation function to its classifiers)."""

    def __init__(self, config: HRViTConfig, num_classes: int = 1000, drop_rate: float = 0.1,
                 drop_path_rate: float = 0.0, **backbone_overrides):
        super().__init__(config, drop_path_rate=drop_path_rate, **backbone_overrides)
        for module in self.modules():  # undo the segmentation backbone's truncated-normal init
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.reset_parameters()
            if isinstance(module, HRViTAttention):
                module.reset_attn_bn()
                if self.with_cp:  # each checkpointed block runs forward twice: the release's momentum
                    module.attn_bn.momentum = 1 - math.sqrt(0.9)
        self.head = HRNetClassifierHead(self.out_channels, num_classes, drop_rate)
        self.num_classes, self.num_features = num_classes, FEATURES
        self.pretrained_cfg = dict(PRETRAINED_CFG, num_classes=num_classes)

    @property
    def with_cp(self) -> bool:
        return any(getattr(stage, "with_cp", False) for stage in self.features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.features(HRViT.forward(self, x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """A new Linear(2048, num_classes) (an identity for 0): fine-tuning on another label set."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"reset_classifier: argument 'num_classes' must be an int >= 0, got {num_classes!r}")
        self.head.classifier = nn.Linear(FEATURES, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes
        self.pretrained_cfg = dict(self.pretrained_cfg, num_classes=num_classes)


@register_model
def hrvit_b1_cls(**overrides) -> HRViTClassifier:
    return HRViTClassifier(VARIANTS["b1"], **overrides)


@register_model
def hrvit_b2_cls(**overrides) -> HRViTClassifier:
    return HRViTClassifier(VARIANTS["b2"], **overrides)


@register_model
def hrvit_b3_cls(**overrides) -> HRViTClassifier:
    return HRViTClassifier(VARIANTS["b3"], **overrides)
