"""Named model sizes: ViT Ti / S / B / L (Dosovitskiy et al.; Touvron et al. for Ti and S), and
the ladder of sizes scaling sweeps step through."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from radfm_jax.config.schema import ImageTowerConfig, TextTowerConfig

# size -> (width, depth, heads); every size uses mlp_ratio 4.
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
}


def _size(size: str) -> tuple[int, int, int]:
    if size not in VIT_SIZES:
        raise ValueError(f"unknown model size {size!r}; valid sizes: {', '.join(VIT_SIZES)}")
    return VIT_SIZES[size]


def vit(size: str, patch_size: int = 16, **overrides) -> ImageTowerConfig:
    """The ViT-<size>/<patch_size> image tower, e.g. vit("B", 16) is ViT-B/16."""
    width, depth, heads = _size(size)
    cfg = ImageTowerConfig(
        patch_size=patch_size, width=width, depth=depth, heads=heads, mlp_ratio=4.0
    )
    return dataclasses.replace(cfg, **overrides)


def text(size: str, depth: int = 12, **overrides) -> TextTowerConfig:
    """A text tower with the width and heads of ViT-<size> (CLIP-style: depth 12 by default)."""
    width, _, heads = _size(size)
    cfg = TextTowerConfig(width=width, depth=depth, heads=heads, mlp_ratio=4.0)
    return dataclasses.replace(cfg, **overrides)


class LadderSize(NamedTuple):
    name: str
    width: int
    depth: int
    heads: int


# Scaling sweeps: from a size that trains in minutes on a CPU to ViT-L, each step ~3-8x the
# parameters of the one before. M is the 512-wide ViT of Zhai et al. (2022), "Scaling ViTs".
_LADDER = (
    LadderSize("XXS", 64, 2, 2),
    LadderSize("XS", 128, 4, 4),
    LadderSize("Ti", *VIT_SIZES["Ti"]),
    LadderSize("S", *VIT_SIZES["S"]),
    LadderSize("M", 512, 12, 8),
    LadderSize("B", *VIT_SIZES["B"]),
    LadderSize("L", *VIT_SIZES["L"]),
)


def ladder() -> list[LadderSize]:
    """The model sizes of scaling sweeps, smallest first: (width, depth, heads) given to both the
    image and the text tower (mlp_ratio and patch size stay the base config's)."""
    return list(_LADDER)
