"""What the benchmark measures by default: model list and the per-op stage shapes."""
from __future__ import annotations

from dataclasses import dataclass

from hrvit_kernels.models import hlg
from hrvit_kernels.models.hrvit import VARIANTS
from hrvit_kernels.models.cards import model_card

# name@size runs that model at size x size instead of --size (the classifiers at their 224).
DEFAULT_MODELS = ["hrvit_b1_segformer", "hrvit_b2_segformer", "hrvit_b3_segformer", "hlg_small@224", "setr_hlg_small"]


@dataclass(frozen=True)
class OpCase:
    op: str         # a key of op_table.OPS
    label: str      # where the shape comes from
    shape: dict     # sizes the op's input factory takes

    def describe(self) -> str:
        return f"{self.op} {self.label} " + " ".join(f"{k}={v}" for k, v in self.shape.items())


def hrvit_stage_cases(variant: str, height: int, width: int, batch: int) -> list[OpCase]:
    """The stripe attention, MixCFN and residual-sum + LayerNorm shapes of each branch of an HRViT variant at
    height x width."""
    cfg = VARIANTS[variant]
    cases = []
    for branch, (C, sw, ratio) in enumerate(zip(cfg.widths, cfg.stripe_widths, cfg.mlp_ratios)):
        stride = 4 * 2 ** branch
        H, W = -(-height // stride), -(-width // stride)
        label = f"{variant}/branch{branch}@{height}x{width}"
        cases.append(OpCase("cswin_attention", label,
                            dict(B=batch, H=H, W=W, C=C, stripe_width=sw, head_dim=cfg.head_dim)))
        cases.append(OpCase("mix_conv_gelu", label, dict(B=batch, H=H, W=W, R=C * ratio)))
        cases.append(OpCase("add_layer_norm", label, dict(B=batch, H=H, W=W, C=C)))
    return cases


def hlg_stage_cases(variant: str, height: int, width: int, batch: int) -> list[OpCase]:
    """HLG's attention shapes at height x width: each of stages 1-3's local attention (dilated windows; the
    contiguous ones cost the same) and global attention against its window tokens, and stage 4's global
    attention over all its tokens."""
    cfg = hlg.VARIANTS[variant]
    cases = []
    side = lambda n, stage: -(-n // 2 ** (stage + 2))  # noqa: E731  (the stem and each stage halve, rounding up)
    for stage, C in enumerate(cfg.widths):
        H, W = side(height, stage), side(width, stage)
        label = f"hlg_{variant}/stage{stage + 1}@{height}x{width}"
        if stage < 3:
            cases.append(OpCase("hlg_local_attention", label, dict(B=batch, H=H, W=W, C=C, dilated=True)))
        keys = -(-H // 7) * -(-W // 7) if stage < 3 else H * W
        cases.append(OpCase("hlg_global_attention", label, dict(B=batch, H=H, W=W, M=keys, C=C)))
    return cases


def parse_image_size(text: str) -> tuple[int, int]:
    """"512" -> (512, 512); "1024x2048" -> (1024, 2048) (height x width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"image size must look like 512 or 1024x2048 (height x width), got {text!r}")
    return int(parts[0]), int(parts[-1])


def atm_cases(batch: int) -> list[OpCase]:
    """SegViT ViT-L ADE20K: 150 class queries over the 40 x 40 tokens of a 640 crop, 16 heads of 32."""
    return [OpCase("attention_to_mask", "segvit-vitl-ade@640", dict(B=batch, Q=150, L=1600, C=512, heads=16))]


def segformer_resize_cases(variants, height: int, width: int, batch: int, classes: int = 150) -> list[OpCase]:
    """The SegFormer head's resizes with HRViT variants: the sum of the four levels' D-channel maps at
    the stride-4 size, and the final resize of the class logits to the input size (each distinct shape
    once: b1 and b2 share D = 256, and all share the logits' shape)."""
    levels = [(-(-height // (4 * 2 ** i)), -(-width // (4 * 2 ** i))) for i in range(4)]
    cases = [OpCase("resize_sum", f"segformer-head-levels@{height}x{width}",
                    dict(B=batch, C=model_card(f"hrvit_{v}_segformer").decode_channels, sizes=levels, size=levels[0])) for v in variants]
    if variants:
        cases.append(OpCase("resize_sum", f"logits@{height}x{width}",
                            dict(B=batch, C=classes, sizes=levels[:1], size=(height, width))))
    return list({(c.label, repr(c.shape)): c for c in cases}.values())
