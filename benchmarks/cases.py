"""What the benchmark measures by default: model list and the per-op stage shapes."""
from __future__ import annotations

from dataclasses import dataclass

from hrvit_kernels.models.hrvit import VARIANTS
from hrvit_kernels.ops.cswin_attention import stripe_heads

DEFAULT_MODELS = ["hrvit_b1_segformer", "hrvit_b2_segformer", "hrvit_b3_segformer"]


@dataclass(frozen=True)
class OpCase:
    op: str         # "cswin_attention" | "mix_conv_gelu" | "attention_to_mask"
    label: str      # where the shape comes from
    shape: dict     # sizes the op's input factory takes

    def describe(self) -> str:
        return f"{self.op} {self.label} " + " ".join(f"{k}={v}" for k, v in self.shape.items())


def hrvit_stage_cases(variant: str, size: int, batch: int) -> list[OpCase]:
    """The stripe attention and MixCFN shapes of each branch of an HRViT variant at size x size."""
    cfg = VARIANTS[variant]
    cases = []
    for branch, (C, sw, ratio) in enumerate(zip(cfg.widths, cfg.stripe_widths, cfg.mlp_ratios)):
        side = -(-size // (4 * 2 ** branch))
        heads, used = stripe_heads(C, cfg.head_dim)
        label = f"{variant}/branch{branch}@{size}"
        cases.append(OpCase("cswin_attention", label,
                            dict(B=batch, H=side, W=side, C=C, stripe_width=sw, head_dim=cfg.head_dim)))
        cases.append(OpCase("mix_conv_gelu", label, dict(B=batch, H=side, W=side, R=C * ratio)))
    return cases


def atm_cases(batch: int) -> list[OpCase]:
    """SegViT ViT-L ADE20K: 150 class queries over the 40 x 40 tokens of a 640 crop, 16 heads of 32."""
    return [OpCase("attention_to_mask", "segvit-vitl-ade@640", dict(B=batch, Q=150, L=1600, C=512, heads=16))]
