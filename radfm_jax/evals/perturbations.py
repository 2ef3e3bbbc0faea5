"""Controlled acquisition shifts for robustness evaluation: each perturbation acts on display
images in [0, 1] at three severities, deterministically (noise is seeded by the batch), so a
model's metric can be reported against the size of the shift.

    resolution  acquired at 1/2, 1/4, 1/8 of the pixels per side, shown at full size (bilinear)
    gamma       intensity x -> x ** g, g = 1.5, 2, 3 (darker mid-tones, a different LUT)
    contrast    x -> 0.5 + c (x - 0.5), c = 0.75, 0.5, 0.3
    noise       additive Gaussian noise, sigma = 0.03, 0.06, 0.12
    jpeg        JPEG compression at quality 50, 20, 5
    rotate      rotation about the centre by 5, 10, 15 degrees (edges filled with black)
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

SEVERITIES = (1, 2, 3)

_RESOLUTION = {1: 2, 2: 4, 3: 8}
_GAMMA = {1: 1.5, 2: 2.0, 3: 3.0}
_CONTRAST = {1: 0.75, 2: 0.5, 3: 0.3}
_NOISE = {1: 0.03, 2: 0.06, 3: 0.12}
_JPEG = {1: 50, 2: 20, 3: 5}
_ROTATE = {1: 5.0, 2: 10.0, 3: 15.0}


def _per_image(images: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL operation to each (H, W) image of a (B, H, W, 1) batch in [0, 1]."""
    out = np.empty_like(images)
    for i, image in enumerate(images[..., 0]):
        pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
        out[i, ..., 0] = np.asarray(fn(pil), np.float32) / 255.0
    return out


def _resolution(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = _RESOLUTION[severity]
    h, w = images.shape[1:3]

    def down_up(pil: Image.Image) -> Image.Image:
        small = pil.resize((max(1, w // factor), max(1, h // factor)), Image.BILINEAR)
        return small.resize((w, h), Image.BILINEAR)

    return _per_image(images, down_up)


def _gamma(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return images ** _GAMMA[severity]


def _contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return 0.5 + _CONTRAST[severity] * (images - 0.5)


def _noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return images + _NOISE[severity] * rng.standard_normal(images.shape).astype(np.float32)


def _jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    def compress(pil: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=_JPEG[severity])
        return Image.open(io.BytesIO(buffer.getvalue()))

    return _per_image(images, compress)


def _rotate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _per_image(images, lambda pil: pil.rotate(_ROTATE[severity], resample=Image.BILINEAR))


PERTURBATIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "resolution": _resolution,
    "gamma": _gamma,
    "contrast": _contrast,
    "noise": _noise,
    "jpeg": _jpeg,
    "rotate": _rotate,
}


def perturb(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """(B, H, W, 1) display images in [0, 1] -> the perturbed batch, clipped to [0, 1]."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; use one of {', '.join(PERTURBATIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    images = np.asarray(images, np.float32)
    out = PERTURBATIONS[name](images, severity, np.random.default_rng(seed))
    return np.clip(out, 0.0, 1.0).astype(np.float32)
