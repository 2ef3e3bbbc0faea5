"""Putting a CT-RATE volume in Hounsfield units and millimetres, whichever release it comes from.

CT-RATE's first release stored the scanner's raw values: HU = RescaleSlope * v + RescaleIntercept
with the slope / intercept of metadata/*_metadata.csv (CT-CLIP's data.py applies them). The
re-released ("fixed", v2) volumes already hold HU, while the metadata CSVs still list the DICOM
slope / intercept (typically 1 / -1024), so applying them again shifts every voxel by -1024 HU
(CT-CLIP issue #50). The `hu` option says which holds:

  "stored"   the values as read (NIfTI scl_slope / scl_inter applied) are HU;
  "rescale"  HU = RescaleSlope * value + RescaleIntercept from the metadata CSV;
  "auto"     decided per volume, by the rule of `decide_hu` below.

Spacing: nibabel reports 1 mm for a missing (zero) pixdim, so a header spacing of exactly
(1, 1, 1) mm carries no information; the metadata's (XYSpacing, XYSpacing, ZSpacing) is used
instead, keeping the header's axis directions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from radfm_jax.data.builders.ct_rate.tables import ScanMetadata
from radfm_jax.data.volume import Volume

HuMode = Literal["auto", "stored", "rescale"]
HU_MODES: tuple[str, ...] = ("auto", "stored", "rescale")

AIR_HU = -1000.0
# How far from -1000 HU the low end of a chest CT may lie and still be read as air: lung
# parenchyma (-900 .. -700 HU) and reconstruction noise keep it within this band.
AIR_TOLERANCE_HU = 300.0
# The low end of the body: this percentile of the voxels above the volume's minimum (scanners
# fill the area outside the reconstruction circle with one padding value, the minimum).
LOW_END_PERCENTILE = 1.0


class HounsfieldUndecided(ValueError):
    """Neither reading of a volume puts its air near -1000 HU (auto mode)."""


def low_end(values: np.ndarray) -> float:
    """The LOW_END_PERCENTILE of the values above the minimum (the minimum itself when constant).

    Read on every 4th voxel along i and j and every 2nd along k: a regular 1-in-32 sample gives
    the same percentile to a few HU and is ~30x faster on a 512 x 512 x 300 scan."""
    values = values[::4, ::4, ::2]
    above = values[values > values.min()]
    return float(np.percentile(above if above.size else values, LOW_END_PERCENTILE))


def decide_hu(values: np.ndarray, metadata: ScanMetadata) -> Literal["stored", "rescale"]:
    """The auto rule. A chest CT always contains air (around the body, in the lungs), the lowest
    tissue: -1000 HU. Read the low end of the volume both ways, as stored and through the
    metadata's slope / intercept, and take the reading that puts it nearer -1000 HU, provided
    that one is within AIR_TOLERANCE_HU of it. A slope of 1 and intercept of 0 make both
    readings equal: "stored". Raises HounsfieldUndecided otherwise; pass hu="stored" or
    hu="rescale" for such data. Limit: an HU volume with no air at all (a crop to soft tissue,
    never a whole chest CT) has its low end near 0, which reads as raw air: "rescale".
    """
    stored = low_end(values)
    rescaled = metadata.rescale_slope * stored + metadata.rescale_intercept
    stored_off, rescaled_off = abs(stored - AIR_HU), abs(rescaled - AIR_HU)
    if min(stored_off, rescaled_off) > AIR_TOLERANCE_HU:
        raise HounsfieldUndecided(
            f"low end {stored:.0f} as stored, {rescaled:.0f} rescaled "
            f"(slope {metadata.rescale_slope}, intercept {metadata.rescale_intercept}): "
            f"neither is air (-1000 +/- {AIR_TOLERANCE_HU:.0f} HU)")
    return "stored" if stored_off <= rescaled_off else "rescale"


def to_hounsfield(volume: Volume, metadata: ScanMetadata,
                  mode: HuMode) -> tuple[Literal["stored", "rescale"], Volume]:
    """The reading used ("auto" decides with decide_hu) and the volume in HU."""
    if mode not in HU_MODES:
        raise ValueError(f"hu must be one of {HU_MODES}, got {mode!r}")
    if mode == "auto":
        mode = decide_hu(volume.values, metadata)
    if mode == "stored":
        return mode, volume
    values = volume.values.astype(np.float32) * np.float32(metadata.rescale_slope)
    values += np.float32(metadata.rescale_intercept)
    return mode, Volume(values=values, affine=volume.affine)


def with_spacing(volume: Volume, metadata: ScanMetadata) -> Volume:
    """The volume with the metadata's spacing when its header spacing is the (1, 1, 1) mm that
    nibabel reports for missing voxel sizes; otherwise unchanged."""
    if not np.allclose(volume.spacing, 1.0, atol=1e-4):
        return volume
    affine = volume.affine.copy()
    directions = affine[:3, :3] / np.asarray(volume.spacing)
    affine[:3, :3] = directions * np.asarray(metadata.spacing, dtype=np.float64)
    return Volume(values=volume.values, affine=affine)
