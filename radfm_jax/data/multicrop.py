"""Multi-crop views for self-distillation (DINO / DINOv2 / RAD-DINO): from each training image,
two global views at the model's input size and `local_count` small local views, each a random
square crop resized, with its own brightness / contrast jitter. No flips: a radiograph's left
and right are anatomy (the heart is on the left), not a symmetry."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from radfm_jax.data.transforms import IMAGE_STD, Record, random_crop_resize


@dataclasses.dataclass(frozen=True)
class MultiCrop(grain.transforms.RandomMap):
    """element["image"] (H, W, C), normalised -> "global_views" (2, size, size, C) and
    "local_views" (local_count, local_size, local_size, C). Scales are fractions of the image
    side: DINO's area ranges (0.32-1 global, 0.05-0.32 local) are these squared."""

    size: int
    local_size: int
    local_count: int
    global_scale: tuple[float, float] = (0.57, 1.0)
    local_scale: tuple[float, float] = (0.22, 0.57)
    brightness: float = 0.1
    contrast: float = 0.2

    def _view(self, image: np.ndarray, rng: np.random.Generator, scale: tuple[float, float], size: int) -> np.ndarray:
        view = random_crop_resize(image, rng, *scale, size)
        c = np.float32(rng.uniform(1.0 - self.contrast, 1.0 + self.contrast))
        b = np.float32(rng.uniform(-self.brightness, self.brightness) / IMAGE_STD)  # on normalised pixels
        m = np.float32(view.mean())
        return (view - m) * c + (m + b)

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        image = element["image"]
        out = dict(element)
        out["global_views"] = np.stack([self._view(image, rng, self.global_scale, self.size) for _ in range(2)])
        out["local_views"] = np.stack([self._view(image, rng, self.local_scale, self.local_size)
                                       for _ in range(self.local_count)])
        return out
