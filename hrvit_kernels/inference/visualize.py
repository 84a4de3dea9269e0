"""Pictures of a label map: the dataset's colours, and the image blended with them under a legend of the
classes present."""
from __future__ import annotations

import torch

from hrvit_kernels._files import write_atomically
from hrvit_kernels._optional import require


def colorize(labels, palette):
    """H x W labels -> H x W x 3 uint8 colours (255 and other labels outside the palette: black)."""
    np = require("numpy")
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8)
    return table[np.clip(labels, 0, 255).astype(np.int64)]


def overlay(image, labels, palette, class_names, alpha: float = 0.5, legend: bool = True):
    """A PIL image: the RGB image blended with the label colours (``alpha`` of colour), and a legend of the
    classes present (most pixels first) on its right."""
    np = require("numpy")
    Image, ImageDraw = require("PIL.Image"), require("PIL.ImageDraw")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: argument 'alpha' must be in [0, 1], got {alpha}")
    rgb = np.asarray(image, np.float32)
    colours = colorize(labels, palette).astype(np.float32)
    if rgb.shape != colours.shape:
        raise ValueError(f"overlay: image of shape {rgb.shape} but labels of shape {colours.shape[:2]}")
    blended = Image.fromarray(((1 - alpha) * rgb + alpha * colours).round().astype(np.uint8))
    if not legend:
        return blended
    flat = labels.cpu().numpy().ravel() if isinstance(labels, torch.Tensor) else np.asarray(labels).ravel()
    counts = np.bincount(flat[flat < len(class_names)], minlength=len(class_names))
    present = [int(c) for c in np.argsort(-counts) if counts[c] > 0]
    row, swatch = 16, 12
    width = 12 + swatch + 6 * max((len(class_names[c]) for c in present), default=0) + 12
    canvas = Image.new("RGB", (blended.width + width, max(blended.height, row * len(present) + 8)), "white")
    canvas.paste(blended, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(present):
        x, y = blended.width + 6, 4 + i * row
        draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(int(v) for v in palette[c]), outline="black")
        draw.text((x + swatch + 6, y), class_names[c], fill="black")
    return canvas


def save_png(picture, path) -> None:
    """Writes a PIL image or an H x W (x 3) uint8 array as PNG atomically (a temporary file, then rename)."""
    import io

    np = require("numpy")
    Image = require("PIL.Image")
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(np.asarray(picture))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())
