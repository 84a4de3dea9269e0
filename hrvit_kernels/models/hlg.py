"""HLG Transformer (the SETR journal extension's Hierarchical Local-Global pyramid): the ImageNet classifiers
``hlg_{tiny,small,medium,large}`` and the segmentation backbone of SETR-HLG, with the release's parameter names
(keys in the segmentation copy's layout, MLP hidden width 4 * input channels).

Stages 1-3: every block merges (block 0 halves the map with a grouped stride-2 conv), runs a depth-wise MLP,
smooths the map with a bottleneck that replaces the residual stream, attends locally in 7 x 7 windows (the query
also the key; contiguous windows in even blocks, dilated in odd ones), pools one token per window and attends
from every pixel to the window tokens. Stage 4: global attention with a post-norm.

Other sizes than the release's 224 x 224 (our design; identical to the release at 224): the local attention pads
the map bottom/right with zeros to 7 * ceil(H/7) x 7 * ceil(W/7) and masks the padded keys; dilated windows take
every ceil(H/7)-th row and ceil(W/7)-th column; window tokens average the real pixels of their window; window
token m keeps the release's pseudo-position, pixel (m // W, m % W), in the global bias; the last stage's bias
covers its whole map. Any H, W >= 32 (every stride-2 step rounds up).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hrvit_kernels.models._init import init_transformer_weights, keep_gradient_layout
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.modules import DropPath, Linear
from hrvit_kernels.modules.batchnorm import conv_bn_act, eval_affine, fused_inference
from hrvit_kernels.modules.hlg import HEAD_DIM, ConvBNGELU, DynamicPositionBias, SpatialSmoothing
from hrvit_kernels.ops import depthwise_conv3x3, depthwise_mlp, hlg_global_attention, hlg_local_attention
from hrvit_kernels.ops.hlg_attention.reference import partition, real_tokens

LN_EPS = 1e-6


@dataclass(frozen=True)
class HLGConfig:
    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]


VARIANTS = {
    "tiny": HLGConfig((64, 128, 256, 512), (2, 2, 6, 2)),
    "small": HLGConfig((96, 192, 384, 768), (2, 2, 6, 2)),
    "medium": HLGConfig((96, 192, 384, 768), (2, 2, 14, 2)),
    "large": HLGConfig((128, 256, 512, 1024), (2, 2, 18, 2)),
}


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _map(tokens: torch.Tensor, hw) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *hw)


class _DownProj(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channels, channels, 3, 2, 1, groups=in_channels),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_bn_act(self.proj[0], self.proj[1], x, "gelu")


class _DepthwiseMLP(nn.Module):
    """1x1 conv Cin -> h, BN, GELU, depthwise 3x3 (stride 2 in a stage's first block), BN, GELU, 1x1 h -> C."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        hidden = 4 * in_channels
        self.fc1 = nn.Conv2d(in_channels, hidden, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.fc3 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fused_inference(self.norm1, self.norm2):
            x = F.gelu(self.norm1(self.fc1(x)))
            return self.fc3(F.gelu(self.norm2(self.fc2(x))))
        return depthwise_mlp(x, self.fc1.weight.flatten(1), self.fc1.bias, *eval_affine(self.norm1),
                             self.fc2.weight, self.fc2.bias, *eval_affine(self.norm2),
                             self.fc3.weight.flatten(1), self.fc3.bias, self.fc2.stride[0])


class _Projection(nn.Module):
    """The global attention's output projection (``global_attn.proj``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _Block(nn.Module):
    """One HLG block. ``local=True`` (stages 1-3): merge + MLP, smoothing, local window attention (dilated
    windows when ``dilated``), window tokens, global attention. ``local=False`` (stage 4): merge + MLP, then
    global attention over all tokens with a post-norm. Modules are created in the release's key order."""

    def __init__(self, in_channels: int, channels: int, first: bool, local: bool, dilated: bool, drop_path: float):
        super().__init__()
        heads = channels // HEAD_DIM
        self.local, self.dilated, self.first = local, dilated, first
        if local:
            self.aux_q = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
            self.norm0 = nn.LayerNorm(channels, eps=LN_EPS)
            self.h0_norm = nn.LayerNorm(channels, eps=LN_EPS)
            self.pos_local = DynamicPositionBias(channels // 16, heads)
            self.spatial_smooth = SpatialSmoothing(channels)
        if first:
            self.down_proj = _DownProj(in_channels, channels)
        # Linear: the few-token products of the last stages by packed weights for inference.
        self.q = Linear(channels, channels)
        self.k = Linear(channels, channels)
        self.v = Linear(channels, channels)
        self.pos_global = DynamicPositionBias(channels // 16, heads)
        self.global_attn = _Projection(channels)
        self.norm2 = nn.LayerNorm(channels, eps=LN_EPS)
        self.mlp = _DepthwiseMLP(in_channels, channels, 2 if first else 1)
        self.norm1 = nn.LayerNorm(channels, eps=LN_EPS)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H_in, W_in) -> (B, C, H, W)."""
        # Residual sums go in place into a fresh result (a norm's, a product's, a conv's) that no backward needs:
        # one map fewer to allocate per sum.
        shortcut = self.down_proj(x) if self.first else x
        hw = shortcut.shape[-2:]
        merged = self.drop_path(self.norm2(_tokens(self.mlp(x)))).add_(_tokens(shortcut))
        if not self.local:
            return _map(self._last_stage(merged, hw), hw)
        a = _map(merged, hw)
        smoothed = _tokens(self.spatial_smooth.residual_gelu(a))  # replaces the residual stream
        u = self.norm0(smoothed)
        q, v = self.q(u), self.v(u)
        local = hlg_local_attention(q, v, hw, self.dilated, self.pos_local.window_bias())
        smoothed = smoothed + local
        window_tokens = self.h0_norm(_window_means(smoothed, hw, self.dilated))
        query = _tokens(self._aux_q(_map(self.norm1(local), hw))).add_(q)
        out = hlg_global_attention(query, self.k(window_tokens), self.v(window_tokens), hw,
                                   self.pos_global.table(hw))
        return _map(self.drop_path(self.global_attn(out)).add_(smoothed), hw)

    def _aux_q(self, x: torch.Tensor) -> torch.Tensor:
        if not fused_inference():
            return self.aux_q(x)
        return depthwise_conv3x3(x, self.aux_q.weight, self.aux_q.bias)

    def _last_stage(self, t: torch.Tensor, hw) -> torch.Tensor:
        out = hlg_global_attention(self.q(t), self.k(t), self.v(t), hw, self.pos_global.table(hw))
        return self.drop_path(self.norm1(self.global_attn(out))).add_(t)


def _window_means(tokens: torch.Tensor, hw, dilated: bool) -> torch.Tensor:
    """(B, n_h*n_w, C): each window's mean over its real pixels, in window order."""
    windows = partition(tokens, hw, dilated)  # padding is zeros: the sum counts real pixels only
    counts = real_tokens(hw, dilated, tokens.device).sum(1).to(tokens.dtype)
    return windows.sum(2) / counts[None, :, None]


class HLG(nn.Module):
    """The HLG pyramid. ``forward_stages(x)`` -> the four stage outputs (B, C_s, ceil(H/2^(s+1)), ...) before
    any output norm; subclasses add the classifier's or the segmentation backbone's ending."""

    def __init__(self, config: HLGConfig, drop_path_rate: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.config, self.with_cp = config, with_cp
        c1 = config.widths[0]
        self.s0_conv = nn.Sequential(ConvBNGELU(3, c1, 2), ConvBNGELU(c1, c1, 1))
        rates = torch.linspace(0, drop_path_rate, sum(config.depths)).tolist()
        index, in_channels = 0, c1
        for stage, (channels, depth) in enumerate(zip(config.widths, config.depths)):
            blocks = []
            for d in range(depth):
                blocks.append(_Block(in_channels if d == 0 else channels, channels, first=d == 0, local=stage < 3,
                                     dilated=d % 2 == 1, drop_path=rates[index]))
                index += 1
            setattr(self, f"block{stage + 1}", nn.ModuleList(blocks))
            in_channels = channels
        self.out_channels = list(config.widths)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: the input must be images (B, 3, H, W), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"{type(self).__name__}: H and W must be at least 32, got {tuple(x.shape[-2:])}")

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        x = self.s0_conv(x)
        outs = []
        for stage in range(4):
            for block in getattr(self, f"block{stage + 1}"):
                # Gradient checkpointing recomputes a block in backward (its BatchNorms see the batch twice).
                x = checkpoint(block, x, use_reentrant=False) if self.with_cp and self.training else block(x)
            outs.append(x)
        return outs


class HLGClassifier(HLG):
    """The ImageNet classifier: final LayerNorm (``norm``) on the last stage's tokens, their mean, ``head``.
    timm's interface: forward_features -> (B, N4, C4) normalised tokens, forward_head(x, pre_logits)."""

    def __init__(self, config: HLGConfig, num_classes: int = 1000, drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, with_cp: bool = False):
        super().__init__(config, drop_path_rate, with_cp)
        self.num_features = config.widths[3]
        self.norm = nn.LayerNorm(self.num_features, eps=LN_EPS)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
                                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                   first_conv="s0_conv.0.0", classifier="head")
        init_transformer_weights(self)
        keep_gradient_layout(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_tokens(self.forward_stages(x)[-1]))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x.mean(1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


class HLGBackbone(HLG):
    """SETR-HLG's backbone: the four stage outputs as maps, each LayerNorm'ed over channels (``norm_out_0..2``
    for stages 1-3, ``norm`` for stage 4). Its keys are the classifier's minus ``head`` plus ``norm_out_*``."""

    def __init__(self, config: HLGConfig, drop_path_rate: float = 0.1, with_cp: bool = False):
        super().__init__(config, drop_path_rate, with_cp)
        self.norm = nn.LayerNorm(config.widths[3], eps=LN_EPS)
        for i in range(3):
            setattr(self, f"norm_out_{i}", nn.LayerNorm(config.widths[i], eps=LN_EPS))
        init_transformer_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        norms = [self.norm_out_0, self.norm_out_1, self.norm_out_2, self.norm]
        return [_map(norm(_tokens(out)), out.shape[-2:]) for norm, out in zip(norms, self.forward_stages(x))]


def variant_config(variant: str, depths=None) -> HLGConfig:
    """A variant's configuration, with other blocks per stage when ``depths`` is given."""
    config = VARIANTS[variant]
    return config if depths is None else HLGConfig(config.widths, tuple(depths))


def _classifier(variant: str, depths=None, **overrides) -> HLGClassifier:
    return HLGClassifier(variant_config(variant, depths), **overrides)


@register_model
def hlg_tiny(**overrides) -> HLGClassifier:
    return _classifier("tiny", **overrides)


@register_model
def hlg_small(**overrides) -> HLGClassifier:
    return _classifier("small", **overrides)


@register_model
def hlg_medium(**overrides) -> HLGClassifier:
    return _classifier("medium", **overrides)


@register_model
def hlg_large(**overrides) -> HLGClassifier:
    """Depths 2, 2, 18, 2 (the README's 84M and the Cityscapes config; ``depths=(2, 2, 14, 2)`` gives the
    ImageNet yaml's)."""
    return _classifier("large", **overrides)
