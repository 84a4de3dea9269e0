"""The releases' training pipeline (mmseg semantics): ratio-range resize of the base scale, random crop with
cat_max_ratio, horizontal flip, photometric distortion, normalise, pad. Every random draw comes from the
generator passed in, so that a sample's augmentation depends only on (seed, epoch, index): the same on any
number of processes and workers, and after a resume."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hrvit_kernels._optional import require
from hrvit_kernels.data.datasets import IGNORE_INDEX
from hrvit_kernels.inference.segmenter import rescaled_size



@dataclass(frozen=True)
class TrainPipeline:
    base_scale: tuple[int, int]             # (long edge, short edge) at ratio 1
    crop: tuple[int, int]                   # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5

    def __call__(self, image, label, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """image H x W x 3 uint8 and label H x W (numpy), rng a numpy Generator -> (3 x crop float tensor,
        crop long tensor with 255 on padding)."""
        np = require("numpy")
        image, label = self._resize(image, label, rng)
        image, label = self._crop(image, label, rng)
        if rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        image = photometric_distortion(image.astype(np.float32), rng)
        image = (image - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        ch, cw = self.crop
        padded = np.zeros((ch, cw, 3), np.float32)
        padded_label = np.full((ch, cw), IGNORE_INDEX, np.int64)
        padded[:image.shape[0], :image.shape[1]] = image
        padded_label[:label.shape[0], :label.shape[1]] = label
        return torch.from_numpy(padded).permute(2, 0, 1).contiguous(), torch.from_numpy(padded_label)

    def _resize(self, image, label, rng):
        np, Image = require("numpy"), require("PIL.Image")
        ratio = rng.uniform(*self.ratio_range)
        scale = (int(self.base_scale[0] * ratio), int(self.base_scale[1] * ratio))
        height, width = rescaled_size(image.shape[0], image.shape[1], scale)
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        label = np.asarray(Image.fromarray(label.astype(np.uint8)).resize((width, height), Image.NEAREST))
        return image, label.astype(np.int64)

    def _crop(self, image, label, rng):
        np = require("numpy")
        ch, cw = self.crop
        max_y, max_x = max(image.shape[0] - ch, 0), max(image.shape[1] - cw, 0)
        for _ in range(10):  # mmseg: up to 10 tries for a crop no single class dominates
            y, x = int(rng.integers(0, max_y + 1)), int(rng.integers(0, max_x + 1))
            window = label[y:y + ch, x:x + cw]
            classes, counts = np.unique(window[window != IGNORE_INDEX], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def _rgb_to_hsv(rgb):
    np = require("numpy")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(-1)
    delta = value - rgb.min(-1)
    saturation = np.where(value > 0, delta / np.maximum(value, 1e-12), 0.0)
    safe = np.maximum(delta, 1e-12)
    hue = np.where(value == r, (g - b) / safe % 6, np.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return np.stack([np.where(delta > 0, hue * 60.0, 0.0), saturation, value], -1)


def _hsv_to_rgb(hsv):
    np = require("numpy")
    hue, saturation, value = hsv[..., 0] / 60.0, hsv[..., 1], hsv[..., 2]
    chroma = value * saturation
    x = chroma * (1 - np.abs(hue % 2 - 1))
    sector = np.floor(hue).astype(np.int64) % 6
    zeros = np.zeros_like(chroma)
    table = [(chroma, x, zeros), (x, chroma, zeros), (zeros, chroma, x), (zeros, x, chroma), (x, zeros, chroma),
             (chroma, zeros, x)]
    rgb = np.zeros(hsv.shape, hsv.dtype)
    for s, (r, g, b) in enumerate(table):
        mask = sector == s
        rgb[mask] = np.stack([r[mask], g[mask], b[mask]], -1)
    return rgb + (value - chroma)[..., None]


def photometric_distortion(image, rng):
    """mmseg's PhotoMetricDistortion on float RGB in [0, 255], each step with probability 0.5: brightness
    delta in [-32, 32]; contrast factor in [0.5, 1.5] before or after the HSV steps (chosen at random);
    saturation factor in [0.5, 1.5]; hue shift in [-18, 18] degrees; values clipped to [0, 255]."""
    np = require("numpy")

    def clip(x):
        return np.clip(x, 0, 255)

    if rng.integers(2):
        image = clip(image + rng.uniform(-32, 32))
    contrast_first = bool(rng.integers(2))

    def contrast(x):
        return clip(x * rng.uniform(0.5, 1.5)) if rng.integers(2) else x

    if contrast_first:
        image = contrast(image)
    saturate, shift_hue = rng.integers(2), rng.integers(2)
    if saturate or shift_hue:
        hsv = _rgb_to_hsv(image)
        if saturate:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 1)
        if shift_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18)) % 360
        image = clip(_hsv_to_rgb(hsv))
    if not contrast_first:
        image = contrast(image)
    return image
