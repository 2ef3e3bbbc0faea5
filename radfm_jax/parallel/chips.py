"""Accelerator chips (peak dense bf16 FLOP/s and HBM per chip) and TPU slice names.

Figures are the vendors' published per-chip numbers, dense (without 2:4 sparsity):
  TPU v4   275 TFLOP/s bf16, 32 GiB HBM2      cloud.google.com/tpu/docs/v4
  TPU v5e  197 TFLOP/s bf16, 16 GB HBM2       cloud.google.com/tpu/docs/v5e
  TPU v5p  459 TFLOP/s bf16, 95 GB HBM2e      cloud.google.com/tpu/docs/v5p
  TPU v6e  918 TFLOP/s bf16, 32 GB HBM        cloud.google.com/tpu/docs/v6e
  A100     312 TFLOP/s bf16, 40 or 80 GB      NVIDIA A100 datasheet (624 is with sparsity)
  H100 SXM 989 TFLOP/s bf16, 80 GB HBM3       NVIDIA H100 datasheet (1,979 is with sparsity)
  H200 SXM 989 TFLOP/s bf16, 141 GB HBM3e     NVIDIA H200 datasheet (1,979 is with sparsity)
TPU HBM is taken in GiB (Google's v4 page says GiB, the later pages "GB" for the same kind of
figure); NVIDIA's GB are 10^9 bytes.

On every chip listed one JAX device is one chip (v4 and v5p run both TensorCores of a chip
as one "megacore" device), so per-device and per-chip figures are the same.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from radfm_jax.errors import ConfigError

GiB = 1024**3
GB = 10**9
TFLOPS = 1e12


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    peak_bf16_flops: float  # dense, per chip, per second
    hbm_bytes: int | None  # None: unknown (a chip described only by a user-given peak)


TPU_V4 = Chip("TPU v4", 275 * TFLOPS, 32 * GiB)
TPU_V5E = Chip("TPU v5e", 197 * TFLOPS, 16 * GiB)
TPU_V5P = Chip("TPU v5p", 459 * TFLOPS, 95 * GiB)
TPU_V6E = Chip("TPU v6e", 918 * TFLOPS, 32 * GiB)
A100_40GB = Chip("NVIDIA A100 40GB", 312 * TFLOPS, 40 * GB)
A100_80GB = Chip("NVIDIA A100 80GB", 312 * TFLOPS, 80 * GB)
H100_SXM = Chip("NVIDIA H100 SXM", 989 * TFLOPS, 80 * GB)
H200 = Chip("NVIDIA H200", 989 * TFLOPS, 141 * GB)

CHIPS: tuple[Chip, ...] = (TPU_V4, TPU_V5E, TPU_V5P, TPU_V6E, A100_40GB, A100_80GB, H100_SXM, H200)

# `jax.Device.device_kind` strings -> chip, first match wins. TPU kinds are what libtpu reports
# (a v5e says "TPU v5 lite", a v5p "TPU v5"); GPU kinds are the CUDA device names, e.g.
# "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3". PCIe and NVL variants of H100 / H200 have
# lower clocks and peaks, so they are deliberately not matched.
_DEVICE_KINDS: tuple[tuple[str, Chip], ...] = (
    (r"TPU v4", TPU_V4),
    (r"TPU v5 ?(lite|e)", TPU_V5E),
    (r"TPU v5p?", TPU_V5P),
    (r"TPU v6 ?(lite|e)", TPU_V6E),
    (r"NVIDIA A100.*80GB.*", A100_80GB),
    (r"NVIDIA A100.*40GB.*", A100_40GB),
    (r"NVIDIA H100 (80GB HBM3|SXM.*)", H100_SXM),
    (r"NVIDIA H200( SXM.*)?", H200),
)


def chip_for_kind(device_kind: str) -> Chip | None:
    for pattern, chip in _DEVICE_KINDS:
        if re.fullmatch(pattern, device_kind.strip()):
            return chip
    return None


def chip_for_device(device: Any, *, peak_flops: float | None = None) -> Chip | None:
    """The chip behind a JAX device, or None when unknown (e.g. a CPU).

    `peak_flops` (per device, per second) describes a device the table does not know, or
    overrides the table's peak (e.g. a GPU running at a lower clock).
    """
    chip = chip_for_kind(device.device_kind)
    if peak_flops is None:
        return chip
    if peak_flops <= 0:
        raise ConfigError(f"peak FLOP/s must be positive, got {peak_flops}")
    return Chip(device.device_kind, float(peak_flops), chip.hbm_bytes if chip else None)


@dataclasses.dataclass(frozen=True)
class TpuTopology:
    """A TPU slice such as "v5e-256", or several such slices joined by the data-centre network
    ("v5e-256x2": two v5e-256 slices, 512 chips): its chip, chip count per slice, slice count
    and how libtpu names its shape."""

    name: str
    chip: Chip
    num_chips: int  # per slice
    topology_name: str  # e.g. "v5e:16x16" (one slice); the argument of get_topology_desc
    chip_config_name: str  # "megacore" (v4, v5p: two TensorCores, one device) or "default"
    wrap: tuple[bool, bool, bool]  # torus links closing each dimension
    num_slices: int = 1  # slices over DCN (multi-slice)

    @property
    def total_chips(self) -> int:
        return self.num_chips * self.num_slices

    def topology_desc_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `jax.experimental.topologies.get_topology_desc` (as MaxText's
        train_compile.py passes them)."""
        return dict(
            platform="tpu",
            topology_name=self.topology_name,
            chip_config_name=self.chip_config_name,
            chips_per_host_bounds=(2, 2, 1) if self.num_chips >= 4 else (1, 1, 1),
            num_slices=self.num_slices,
            wrap=self.wrap,
        )


# Chip grids of each slice size. v5e and v6e slices are 2D and named by chip count; v4 and v5p
# slices are 3D and named by TensorCore count (2 per chip): "v4-32" is 16 chips, 2x2x4.
_GRIDS_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
_GRIDS_3D = {
    4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
    256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16),
}
# generation as users write it -> (chip, libtpu's prefix, cores counted per chip in the name)
_GENERATIONS: dict[str, tuple[Chip, str, int]] = {
    "v4": (TPU_V4, "v4", 2),
    "v5p": (TPU_V5P, "v5", 2),
    "v5e": (TPU_V5E, "v5e", 1),
    "v5litepod": (TPU_V5E, "v5e", 1),
    "v6e": (TPU_V6E, "v6e", 1),
}


def _slice_names() -> list[str]:
    names = []
    for generation, (_, _, cores) in _GENERATIONS.items():
        grids = _GRIDS_2D if cores == 1 else _GRIDS_3D
        names += [f"{generation}-{chips * cores}" for chips in grids]
    return names


def parse_tpu_topology(name: str) -> TpuTopology:
    """"v5e-256" -> TPU v5e, 256 chips, "v5e:16x16"; "v4-32" -> TPU v4, 16 chips, "v4:2x2x4";
    "v5e-256x2" -> two v5e-256 slices (multi-slice, joined by DCN)."""
    match = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)(?:x(\d+))?", name.strip())
    if match is None:
        raise ConfigError(
            f"unknown TPU topology {name!r}; use <generation>-<size> with generation v4, v5p, "
            "v5e (or v5litepod) or v6e, e.g. v5e-256, v4-32, v5p-128, v6e-64, and "
            "<generation>-<size>x<slices> for several slices, e.g. v5e-256x2"
        )
    generation, size = match.group(1), int(match.group(2))
    slices = int(match.group(3) or 1)
    if slices < 1:
        raise ConfigError(f"TPU topology {name!r}: the slice count must be at least 1")
    chip, prefix, cores = _GENERATIONS[generation]
    grids = _GRIDS_2D if cores == 1 else _GRIDS_3D
    chips = size // cores
    if size % cores or chips not in grids:
        valid = ", ".join(n for n in _slice_names() if n.startswith(generation + "-"))
        raise ConfigError(f"no {generation} slice of size {size}; valid sizes: {valid}")
    grid = grids[chips]
    if cores == 1:  # 2D torus: a dimension wraps once it spans the full 16-chip pod edge
        wrap = (grid[0] == 16, grid[1] == 16, False)
    else:  # 3D: slices of whole 4x4x4 cubes are tori in every dimension
        wrap = (chips >= 64,) * 3
    return TpuTopology(
        name=f"{generation}-{size}" + (f"x{slices}" if slices > 1 else ""),
        chip=chip,
        num_chips=chips,
        topology_name=f"{prefix}:{'x'.join(map(str, grid))}",
        chip_config_name="megacore" if cores == 2 else "default",
        wrap=wrap,
        num_slices=slices,
    )
