"""Grayscale PNG / JPEG radiographs -> float32 (H, W) in [0, 1], and an aspect-preserving square
resize.

Such files are already display-ready (MIMIC-CXR-JPG, CheXpert): the full range of the stored
integer type maps to [0, 1] (8-bit / 255, 16-bit / 65535), so no windowing is applied here.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

# Modes that are a colour or palette rendering of a grayscale picture: converted with PIL's
# ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B), dropping alpha.
_TO_GRAY_MODES = ("RGB", "RGBA", "LA", "P", "PA", "1", "CMYK", "YCbCr")


class ImageReadError(ValueError):
    """A file that is not a readable grayscale image; the message names the path and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _to_unit_range(image: Image.Image, path: str | os.PathLike) -> np.ndarray:
    if image.mode in _TO_GRAY_MODES:
        image = image.convert("L")
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32) / np.float32(255.0)
    if image.mode.startswith("I;16"):  # I;16, I;16B, I;16L: 16-bit unsigned
        return np.asarray(image).astype(np.float32) / np.float32(65535.0)
    if image.mode == "I":
        # 32-bit signed container; PIL uses it for 16-bit PNGs on some versions.
        pixels = np.asarray(image)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ImageReadError(path, f"mode I values span [{pixels.min()}, {pixels.max()}], "
                                       "outside the 16-bit range [0, 65535]")
        return pixels.astype(np.float32) / np.float32(65535.0)
    raise ImageReadError(path, f"unsupported pixel mode {image.mode!r}; expected 8- or 16-bit "
                               "grayscale (L, I;16, I) or RGB")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an 8/16-bit grayscale or RGB PNG / JPEG as float32 (H, W) in [0, 1].

    The EXIF orientation tag, when present, is applied. Raises ImageReadError for a missing,
    truncated, corrupt or unsupported file.
    """
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes now, so a truncated file fails here and not later
            image = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageReadError(path, f"truncated, corrupt or not an image ({err})") from err
    return _to_unit_range(image, path)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    # PIL's bilinear filter on float ("F") images widens its support when shrinking, so it is
    # antialiased (a triangle filter as wide as the scale factor).
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), resample=Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def resize_square(
    image: np.ndarray, size: int, mode: Literal["pad", "crop"] = "pad"
) -> np.ndarray:
    """Resizes float (H, W) to (size, size), keeping the aspect ratio.

    "pad": the whole image is scaled to fit and centred, the borders filled with 0.
    "crop": the centred largest square (an odd remainder drops its extra pixel at the end) is
    cut out and scaled to fill the output; the long side's ends are lost.
    A stretched chest would change the cardiothoracic ratio, so the image is never stretched.
    """
    if image.ndim != 2:
        raise ValueError(f"resize_square takes a 2D (H, W) image, got shape {image.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if mode not in ("pad", "crop"):
        raise ValueError(f"resize mode must be 'pad' or 'crop', got {mode!r}")
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    if h == w == size:
        return image
    if mode == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return _resize(image[top:top + side, left:left + side], size, size)
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize(image, new_w, new_h)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out
