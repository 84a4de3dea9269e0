"""HRViT's cross-shaped window attention module (release parameter names)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrvit_kernels.modules.batchnorm import eval_affine
from hrvit_kernels.modules.release_ops import use_release_ops
from hrvit_kernels.ops import cswin_attention


class HRViTAttention(nn.Module):
    """q and v from one projection (k is v), stripe attention on the two channel halves, a parallel
    depthwise-conv path on v, Hardswish, output projection and a zero-initialised BatchNorm."""

    def __init__(self, dim: int, head_dim: int = 32, stripe_width: int = 7):
        super().__init__()
        self.dim, self.head_dim, self.stripe_width = dim, head_dim, stripe_width
        self.to_qkv = nn.Linear(dim, 2 * dim)  # the release's name; it yields q and v only
        self.to_out = nn.Sequential(nn.Linear(dim, dim))
        self.attn_bn = nn.BatchNorm1d(dim)
        self.parallel_conv = nn.Sequential(nn.Hardswish(), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.release_ops = use_release_ops()
        self.reset_attn_bn()

    def reset_attn_bn(self) -> None:
        """The release starts every attention branch switched off."""
        nn.init.zeros_(self.attn_bn.weight)
        nn.init.zeros_(self.attn_bn.bias)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        q, v = self.to_qkv(x).chunk(2, dim=-1)
        # Tokens viewed as a channels-last NCHW image and back: no copies around the conv.
        image = v.unflatten(1, (H, W)).permute(0, 3, 1, 2)
        conv = self.parallel_conv(image).permute(0, 2, 3, 1).reshape(B, N, C)
        out = cswin_attention(q, v, v, (H, W), self.stripe_width, self.head_dim)
        if self.release_ops:
            out = self.to_out(F.hardswish(out + conv))
            return self.attn_bn(out.reshape(B * N, C)).reshape(B, N, C)
        # conv is a fresh tensor whose value no backward needs: sum into it. Hardswish in place too
        # when nothing needs its input for a backward pass.
        hidden = F.hardswish(conv.add_(out), inplace=not conv.requires_grad)
        linear, bn = self.to_out[0], self.attn_bn
        if bn.training:
            return bn(linear(hidden).reshape(B * N, C)).reshape(B, N, C)
        # Eval BatchNorm is a per-channel affine map: folded into the output projection.
        scale, shift = eval_affine(bn)
        return F.linear(hidden, linear.weight * scale[:, None], linear.bias * scale + shift)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, head_dim={self.head_dim}, stripe_width={self.stripe_width}, "
                f"release_ops={self.release_ops}")
