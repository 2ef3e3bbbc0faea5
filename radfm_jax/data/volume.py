"""The in-memory 3D scan every reader returns (DICOM series, NIfTI) and every volume transform
takes: voxel values plus the affine that places them in patient space."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Volume:
    """values[i, j, k] in physical units (Hounsfield units for CT), float32.

    affine is the 4x4 map from voxel index (i, j, k, 1) to RAS+ millimetres (x grows towards
    the patient's right, y towards anterior, z towards superior), the NIfTI / nibabel
    convention. DICOM's LPS patient coordinates are converted by negating x and y.
    """

    values: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        if self.values.ndim != 3:
            raise ValueError(f"a Volume holds a 3D array, got shape {self.values.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"a Volume's affine is 4x4, got shape {self.affine.shape}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k: the lengths of the affine's columns."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))
