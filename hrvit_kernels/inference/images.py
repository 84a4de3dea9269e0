"""Reading the images users have into an RGB uint8 array: a path, a PIL image, an H x W (x C) array or
tensor. Grey images become RGB, RGBA loses its alpha, 16-bit images are scaled to 8 bits; anything else is
refused with what was received and what is accepted."""
from __future__ import annotations

from pathlib import Path

import torch

from hrvit_kernels._optional import require

ACCEPTED = ("a path, a PIL image, or an H x W, H x W x 1, H x W x 3 or H x W x 4 uint8 / uint16 array or tensor "
            "(C x H x W tensors too)")


def _from_pil(image):
    np = require("numpy")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit integer) grey
        array = np.asarray(image).astype(np.float64)
        return _to_rgb((array / (257.0 if array.max() <= 65535 else array.max() / 255.0)).round().astype(np.uint8))
    if image.mode not in ("RGB", "L", "RGBA", "LA", "P", "CMYK", "YCbCr"):
        raise ValueError(f"read_image: image mode {image.mode!r} is not supported; accepted: {ACCEPTED}")
    return np.array(image.convert("RGB"))  # writable, as torch.from_numpy wants


def _to_rgb(array):
    np = require("numpy")
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"read_image: dtype {array.dtype} is not supported; accepted: {ACCEPTED}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"read_image: shape {array.shape} is not supported; accepted: {ACCEPTED}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"read_image: the image is empty (shape {array.shape})")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def read_image(image):
    """An H x W x 3 RGB uint8 numpy array of the image."""
    Image = require("PIL.Image")
    np = require("numpy")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"read_image: no image file at {str(path)!r}")
        try:
            with Image.open(path) as opened:
                return _from_pil(opened)
        except Image.UnidentifiedImageError as exc:
            raise ValueError(f"read_image: {str(path)!r} is not an image Pillow can read") from exc
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, torch.Tensor):
        if image.dim() == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 3, 4):
            image = image.permute(1, 2, 0)  # C x H x W, as torchvision reads images
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return _to_rgb(image)
    raise TypeError(f"read_image: got {type(image).__name__}; accepted: {ACCEPTED}")
