"""HRViT (Gu et al., CVPR 2022): multi-branch, multi-resolution ViT with cross-shaped window attention.

Module and parameter names follow the authors' release, so its checkpoints load with strict=True.
Beyond the release, any input H, W >= 32 works: the input is padded on the bottom/right to a multiple
of 32 and every output map is cropped back to ceil(H / stride) x ceil(W / stride).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hrvit_kernels.models._init import init_transformer_weights, keep_gradient_layout
from hrvit_kernels.models.registry import register_model
from hrvit_kernels.modules import DES, DropPath, HRViTAttention, MixCFN, use_release_ops
from hrvit_kernels.ops import add_layer_norm, layer_norm
from hrvit_kernels.ops._checks import quiet_under_tracing

STEM_WIDTH = 64
MAX_STRIDE = 32
BRANCHES_PER_STAGE = (1, 2, 3, 3, 4, 4)


@dataclass(frozen=True)
class HRViTConfig:
    widths: tuple[int, ...]                     # channels of the stride-4, 8, 16, 32 branches
    blocks: tuple[tuple[int, ...], ...]         # blocks per branch, for each of the six stages
    head_dim: int
    mlp_ratios: tuple[int, ...]                 # MixCFN expansion per branch
    drop_path_rate: float                       # the ADE20K setting
    stripe_widths: tuple[int, ...] = (1, 2, 7, 7)


VARIANTS = {
    "b1": HRViTConfig((32, 64, 128, 256), ((1,), (1, 1), (1, 1, 6), (1, 1, 6), (1, 1, 6, 2), (1, 1, 2, 2)),
                      head_dim=32, mlp_ratios=(4, 4, 4, 4), drop_path_rate=0.1),
    "b2": HRViTConfig((48, 96, 240, 384), ((1,), (1, 1), (1, 1, 6), (1, 1, 6), (1, 1, 6, 2), (1, 1, 6, 2)),
                      head_dim=24, mlp_ratios=(2, 3, 3, 3), drop_path_rate=0.2),
    "b3": HRViTConfig((64, 128, 256, 512), ((1,), (1, 1), (1, 1, 6), (1, 1, 6), (1, 1, 6, 3), (1, 1, 6, 3)),
                      head_dim=32, mlp_ratios=(2, 2, 2, 2), drop_path_rate=0.3),
}


class ConvStem(nn.Module):
    """Two 3x3 stride-2 conv + BN + ReLU: 3 -> 32 -> 64 channels at 1/4 resolution."""

    def __init__(self, in_channels: int = 3, width: int = STEM_WIDTH):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width // 2, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class PatchEmbed(nn.Module):
    """1x1 conv, depthwise 3x3 conv, flatten to row-major tokens, LayerNorm."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channels, channels, 1),
                                  nn.Conv2d(channels, channels, 3, padding=1, groups=channels))
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Tokens (B, H*W, C); with ``out_dtype`` (inference), the norm is the package's op and returns that
        dtype."""
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        if out_dtype is None:
            return self.norm(tokens)
        return layer_norm(tokens, self.norm.weight, self.norm.bias, self.norm.eps, out_dtype)


class HRViTBlock(nn.Module):
    """x + DropPath(Attention(LN x) + DES(x)), then x + DropPath(MixCFN(LN x))."""

    def __init__(self, dim: int, head_dim: int, stripe_width: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = HRViTAttention(dim, head_dim, stripe_width)
        self.des = DES(dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = MixCFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)
        self.release_ops = use_release_ops()

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if self.runs_inference_step():
            x, delta = self.inference_step(x, None, H, W)
            return _add_into_fresh(x, delta)
        x = x + self.drop_path(self.attn(self.attn_norm(x), H, W) + self.des(x))
        return x + self.drop_path(self.ffn(self.ffn_norm(x), H, W))

    def runs_inference_step(self) -> bool:
        """Eval mode, no gradient recorded and the rewrites chosen: the norms run as the package's op."""
        return not self.release_ops and not self.training and not torch.is_grad_enabled()

    def inference_step(self, x: torch.Tensor, pending: torch.Tensor | None, H: int,
                       W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The block on input ``x + pending`` (pending: the previous block's last branch output, or None),
        returned the same way, as (x, pending): each residual sum is fused into the norm that reads it, which
        returns the dtype of the projections after it (a residual stream kept in fp32 under autocast is
        neither converted nor summed with bf16 branch outputs separately)."""
        norm, dtype = self.attn_norm, _product_dtype(x)  # the stream's sums keep x's dtype
        if pending is None:
            normed = layer_norm(x, norm.weight, norm.bias, norm.eps, dtype)
        else:
            x, normed = add_layer_norm(x, pending, norm.weight, norm.bias, norm.eps, dtype)
        delta = _add_into_fresh(self.attn(normed, H, W), self.des(x))
        norm = self.ffn_norm
        x, normed = add_layer_norm(x, delta, norm.weight, norm.bias, norm.eps, dtype)
        return x, self.ffn(normed, H, W)


class HRViTStage(nn.Module):
    """Per branch: patch embedding, its blocks on tokens, a final LayerNorm; maps in, maps out."""

    def __init__(self, in_widths, widths, blocks, head_dim, stripe_widths, mlp_ratios, drop_paths,
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.patch_embed = nn.ModuleList(PatchEmbed(i, o) for i, o in zip(in_widths, widths))
        self.branches = nn.ModuleList(
            nn.ModuleList(HRViTBlock(widths[b], head_dim, stripe_widths[b], mlp_ratios[b], drop_paths[j])
                          for j in range(blocks[b]))
            for b in range(len(widths)))
        self.norm = nn.ModuleList(nn.LayerNorm(w) for w in widths)
        self.release_ops = use_release_ops()

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        # Inference runs the norms as the package's op, each straight into the dtype its readers want: the
        # embedding's into the residual stream's, the final one into the fusion convs' (under autocast, bf16
        # maps: no conversion in front of every conv that reads them); the blocks hand their last residual
        # sum to the norm after them (HRViTBlock.inference_step).
        inference = not self.release_ops and not torch.is_grad_enabled()
        outs = []
        for x, embed, blocks, norm in zip(maps, self.patch_embed, self.branches, self.norm):
            B, _, H, W = x.shape
            if inference and all(blk.runs_inference_step() for blk in blocks):
                tokens, pending = embed(x, out_dtype=_residual_stream_dtype(x)), None
                for blk in blocks:
                    tokens, pending = blk.inference_step(tokens, pending, H, W)
                out_dtype = _product_dtype(tokens)
                if pending is None:
                    normed = layer_norm(tokens, norm.weight, norm.bias, norm.eps, out_dtype)
                else:
                    normed = add_layer_norm(tokens, pending, norm.weight, norm.bias, norm.eps, out_dtype)[1]
            else:
                tokens = _residual_stream(embed(x))
                for blk in blocks:
                    if self.with_cp and tokens.requires_grad:
                        tokens = checkpoint(blk, tokens, H, W, use_reentrant=False)
                    else:
                        tokens = blk(tokens, H, W)
                normed = norm(tokens)
            maps_out = normed.transpose(1, 2).reshape(B, -1, H, W)  # a channels-last view
            if not self.release_ops:
                # One NCHW copy here instead of one inside every convolution and upsampling of the
                # fusion block that reads this map (they copy channels-last inputs to NCHW each time).
                maps_out = maps_out.contiguous()
            outs.append(maps_out)
        return outs


def _product_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Linear layer computes x in: the autocast dtype where autocast casts x, else x's."""
    if x.dtype in (torch.float16, torch.bfloat16, torch.float32) and torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _add_into_fresh(total: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
    """total + addend, in place when that keeps the sum's dtype (total must be a fresh result no one else holds)."""
    if torch.promote_types(total.dtype, addend.dtype) == total.dtype:
        return total.add_(addend)
    return total + addend


def _residual_stream_dtype(x: torch.Tensor) -> torch.dtype:
    """The residual stream's dtype for tokens made from x (or x itself): fp32 where autocast casts x (see
    _residual_stream), else x's, the embedding convolution's output dtype."""
    if x.dtype != torch.float64 and torch.is_autocast_enabled(x.device.type):
        return torch.float32
    return x.dtype


def _residual_stream(tokens: torch.Tensor) -> torch.Tensor:
    """The blocks' residual sum stays fp32 under autocast: CUDA autocast's fp32 LayerNorm leaves it so, while CPU
    autocast would keep it in bf16 and round it at every block (b1's logits at 512 x 512: relative error to
    float64 7.6e-3 -> 6.3e-3, about 1-4% more time)."""
    return tokens.to(_residual_stream_dtype(tokens))


def _fusion_path(in_width: int, out_width: int, i: int, j: int) -> nn.Module:
    """The path from input branch j to output branch i of a fusion block."""
    if j == i:
        return nn.Identity()
    if j < i:  # down: strided depthwise conv, BN, 1x1 conv, BN
        s = 2 ** (i - j)
        return nn.Sequential(
            nn.Conv2d(in_width, in_width, s + 1, stride=s, padding=s // 2, groups=in_width, bias=False),
            nn.BatchNorm2d(in_width), nn.Conv2d(in_width, out_width, 1), nn.BatchNorm2d(out_width))
    s = 2 ** (j - i)  # up: 1x1 conv, BN, nearest upsampling
    return nn.Sequential(nn.Conv2d(in_width, out_width, 1), nn.BatchNorm2d(out_width),
                         nn.Upsample(scale_factor=s, mode="nearest"))


class HRViTFusion(nn.Module):
    """HRNet-style exchange: output i = GELU(sum over inputs j of path_ij(input j))."""

    def __init__(self, in_widths, out_widths):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(_fusion_path(in_widths[j], out_widths[i], i, j) for j in range(len(in_widths)))
            for i in range(len(out_widths)))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for paths in self.blocks:
            total = paths[0](maps[0])
            for path, x in zip(paths[1:], maps[1:]):
                total = total + path(x)
            outs.append(F.gelu(total))
        return outs


class HRViT(nn.Module):
    """HRViT backbone: forward(x) returns four NCHW maps at strides 4, 8, 16, 32."""

    def __init__(self, config: HRViTConfig, in_channels: int = 3, drop_path_rate: float | None = None,
                 stripe_widths=None, with_cp: bool = False):
        super().__init__()
        stripe_widths = tuple(stripe_widths or config.stripe_widths)
        if len(stripe_widths) != 4 or any(not isinstance(s, int) or s < 1 for s in stripe_widths):
            raise ValueError(f"HRViT: 'stripe_widths' must be four ints >= 1, got {stripe_widths!r}")
        rate = config.drop_path_rate if drop_path_rate is None else float(drop_path_rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"HRViT: 'drop_path_rate' must be in [0, 1), got {rate}")
        self.config, self.stripe_widths = config, stripe_widths
        self.out_channels = list(config.widths)

        depth_per_stage = [max(b) for b in config.blocks]
        rates = torch.linspace(0, rate, sum(depth_per_stage)).tolist()
        self.stem = ConvStem(in_channels)
        features: list[nn.Module] = []
        widths, offset = [STEM_WIDTH], 0
        for stage, (n_branches, blocks) in enumerate(zip(BRANCHES_PER_STAGE, config.blocks)):
            fused = widths + list(config.widths[len(widths):n_branches])
            features.append(HRViTFusion(widths, fused))
            stage_widths = list(config.widths[:n_branches])
            features.append(HRViTStage(fused, stage_widths, blocks, config.head_dim, stripe_widths,
                                       config.mlp_ratios, rates[offset:offset + depth_per_stage[stage]],
                                       with_cp))
            widths, offset = stage_widths, offset + depth_per_stage[stage]
        self.features = nn.ModuleList(features)
        self.init_weights()
        keep_gradient_layout(self)

    def init_weights(self) -> None:
        """Linear: truncated normal std 0.02, bias 0; norms 1/0; convs PyTorch default; attn_bn 0."""
        init_transformer_weights(self)
        for m in self.modules():
            if isinstance(m, HRViTAttention):
                m.reset_attn_bn()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with quiet_under_tracing():
            if x.dim() != 4 or x.shape[1] != self.stem.conv1.in_channels:
                raise ValueError(f"HRViT: input must be (B, {self.stem.conv1.in_channels}, H, W), "
                                 f"got shape {tuple(x.shape)}")
            H, W = x.shape[-2:]
            if H < MAX_STRIDE or W < MAX_STRIDE:
                raise ValueError(f"HRViT: input H and W must be >= {MAX_STRIDE}, got {H} x {W}")
        pad_h, pad_w = -H % MAX_STRIDE, -W % MAX_STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        maps = [self.stem(x)]
        for layer in self.features:
            maps = layer(maps)
        if pad_h or pad_w:
            maps = [m[..., :math.ceil(H / 4 / 2 ** i), :math.ceil(W / 4 / 2 ** i)] for i, m in enumerate(maps)]
        return maps

    forward_features = forward


def _hrvit(variant: str, **overrides) -> HRViT:
    return HRViT(VARIANTS[variant], **overrides)


@register_model
def hrvit_b1(**overrides) -> HRViT:
    return _hrvit("b1", **overrides)


@register_model
def hrvit_b2(**overrides) -> HRViT:
    return _hrvit("b2", **overrides)


@register_model
def hrvit_b3(**overrides) -> HRViT:
    return _hrvit("b3", **overrides)
