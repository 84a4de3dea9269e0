"""Segmenting images the way the releases tested: test-time resize to the dataset's base scale, whole image
or sliding windows (mmseg's semantics), optional multi-scale + flip, logits resized to the image's own
size. The test configuration of each registered segmentor comes from its card."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from hrvit_kernels.inference import memory
from hrvit_kernels.inference.images import read_image
from hrvit_kernels.data.datasets import BASE_SCALES
from hrvit_kernels.models.cards import CARDS, model_card

MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferenceConfig:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mode: str = "whole"
    crop: int | None = None
    stride: int | None = None
    base_scale: tuple[int, int] | None = None   # None: no test-time resize
    fixed_window: bool = False                   # SETR: every window exactly crop x crop

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"InferenceConfig: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "slide" and not (self.crop and self.stride and 0 < self.stride):
            raise ValueError(f"InferenceConfig: slide mode needs a positive crop and stride, got crop={self.crop}, "
                             f"stride={self.stride}")


def inference_config(name: str, **overrides) -> InferenceConfig:
    """The release's test configuration of a registered segmentor (its card), with overrides."""
    card = model_card(name)
    if card.test_mode is None:
        segmentors = ", ".join(n for n, c in CARDS.items() if c.test_mode)
        raise ValueError(f"inference_config: {name!r} is not a segmentor; segmentors: {segmentors}")
    config = InferenceConfig(card.mean, card.std, card.test_mode, card.test_crop, card.test_stride,
                        BASE_SCALES.get(card.dataset), fixed_window=card.family == "setr")
    return replace(config, **overrides)


def rescaled_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the factor min(long / max(h, w), short / min(h, w))."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """mmseg's grid: max(ceil((size - crop) / stride), 0) + 1 windows, each starting at min(i * stride,
    size - crop), clamped at 0."""
    count = max(math.ceil((size - crop) / stride), 0) + 1
    return [max(min(i * stride, size - crop), 0) for i in range(count)]


class Segmenter:
    """Image -> label map at the image's own size, for a segmentor in eval mode.

    ``segment(image, mode=None, flip=False, scales=None, return_probs=False)``: ``mode`` overrides the
    configuration's ("whole" or "slide"); ``scales``: ratios of the base scale (``MS_RATIOS`` for the
    releases' multi-scale test); ``flip`` adds horizontally flipped passes; softmax scores are averaged.
    Windows run in batches of ``batch_size``; ``amp`` ("bf16" or "fp16") runs under autocast on the model's
    device (CPU bf16 pays off where the CPU has AVX-512-BF16 or AMX). On CPU, ``keep_freed_memory`` (default
    True) calls ``hrvit_kernels.inference.keep_freed_memory()`` so that repeated passes reuse the pages of the
    last one instead of faulting them in again (process-wide; the process keeps its peak memory resident).
    """

    def __init__(self, model: torch.nn.Module, config: InferenceConfig, device=None, amp: str | None = None,
                 batch_size: int = 4, keep_freed_memory: bool = True):
        if amp not in (None, "bf16", "fp16"):
            raise ValueError(f"Segmenter: argument 'amp' must be None, 'bf16' or 'fp16', got {amp!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Segmenter: argument 'batch_size' must be a positive int, got {batch_size!r}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.config, self.amp, self.batch_size = config, amp, batch_size
        if keep_freed_memory and self.device.type == "cpu":
            memory.keep_freed_memory()

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _normalized(self, rgb) -> torch.Tensor:
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float()
        mean = torch.tensor(self.config.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(batch).float()

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def _slide(self, x: torch.Tensor) -> torch.Tensor:
        crop, stride = self.config.crop, self.config.stride
        _, _, height, width = x.shape
        boxes = [(y, x0) for y in window_starts(height, crop, stride) for x0 in window_starts(width, crop, stride)]
        total, count = None, x.new_zeros(1, 1, height, width)
        for i in range(0, len(boxes), self.batch_size):
            chunk = boxes[i:i + self.batch_size]
            windows = torch.cat([x[:, :, y:y + crop, x0:x0 + crop] for y, x0 in chunk])
            logits = self._run(windows)
            if total is None:
                total = x.new_zeros(1, logits.shape[1], height, width)
            for (y, x0), window in zip(chunk, logits):
                total[0, :, y:y + crop, x0:x0 + crop] += window
                count[0, :, y:y + crop, x0:x0 + crop] += 1
        return (total / count)[0]

    def _scores_at(self, rgb, ratio: float, flip: bool, mode: str) -> torch.Tensor:
        """Softmax scores (C, H, W) at the image's size for one scale and flip."""
        height, width = rgb.shape[:2]
        x = self._normalized(rgb)
        size = (height, width)
        if self.config.base_scale is not None:
            long_edge, short_edge = self.config.base_scale
            size = rescaled_size(height, width, (int(long_edge * ratio), int(short_edge * ratio)))
        elif ratio != 1.0:  # no base scale: the ratio applies to the image itself
            size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
        if mode == "slide" and self.config.fixed_window and min(size) < self.config.crop:
            factor = self.config.crop / min(size)  # every window exactly crop x crop
            size = (max(self.config.crop, round(size[0] * factor)), max(self.config.crop, round(size[1] * factor)))
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if flip:
            x = x.flip(-1)
        logits = self._slide(x) if mode == "slide" else self._whole(x)
        if flip:
            logits = logits.flip(-1)
        logits = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        return logits.softmax(0)

    @torch.no_grad()
    def segment(self, image, mode: str | None = None, flip: bool = False, scales=None, return_probs: bool = False):
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"segment: argument 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "slide" and not self.config.crop:
            raise ValueError("segment: slide mode needs the configuration's crop and stride")
        rgb = read_image(image)
        ratios = tuple(scales) if scales is not None else (1.0,)
        if not ratios or any(not isinstance(r, (int, float)) or r <= 0 for r in ratios):
            raise ValueError(f"segment: argument 'scales' must be positive ratios, got {scales!r}")
        passes = [(r, f) for r in ratios for f in ((False, True) if flip else (False,))]
        probs = sum(self._scores_at(rgb, r, f, mode) for r, f in passes) / len(passes)
        labels = probs.argmax(0)
        return (labels, probs) if return_probs else labels


def inference(model_or_name, image, checkpoint=None, device=None, **segment_options):
    """One-call inference: a registered model's name (built with its release defaults and ``checkpoint``)
    or a built model plus its name's test configuration via ``config=``; returns the label map."""
    from hrvit_kernels.models import create_model

    config = segment_options.pop("config", None)
    amp = segment_options.pop("amp", None)
    if isinstance(model_or_name, str):
        model = create_model(model_or_name, checkpoint=checkpoint)
        config = config or inference_config(model_or_name)
    else:
        model = model_or_name
        if config is None:
            raise ValueError("inference: with a built model, pass config=inference_config(name)")
    return Segmenter(model, config, device=device, amp=amp).segment(image, **segment_options)
