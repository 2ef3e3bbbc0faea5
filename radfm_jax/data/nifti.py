"""NIfTI (.nii / .nii.gz / .hdr+.img) -> Volume, via nibabel.

The values are the stored numbers with the header's scl_slope / scl_inter applied (for CT these
are Hounsfield units), as float32. The affine is nibabel's best affine (sform, else qform, else
the voxel sizes), which is already voxel -> RAS+ mm, so no axis is negated here.
"""

from __future__ import annotations

import os
import zlib

import nibabel as nib
import numpy as np

from radfm_jax.data.volume import Volume


class NiftiReadError(ValueError):
    """A file that is not a readable 3D NIfTI volume; the message names the path and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read NIfTI volume {self.path}: {reason}")


def read_nifti(path: str | os.PathLike) -> Volume:
    """Reads a 3D NIfTI file (or 4D with a single volume) into a float32 Volume.

    Raises NiftiReadError for a missing, truncated, corrupt or non-NIfTI file, and for a real
    4D series (fMRI, DWI, multi-phase CT), which needs choosing one volume before it is a scan.
    """
    try:
        image = nib.load(os.fspath(path))
    except FileNotFoundError:
        raise NiftiReadError(path, "no such file") from None
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise NiftiReadError(path, f"not a NIfTI file nibabel can open ({err})") from err
    # nib.load also opens MINC, MGH, Analyze, ...: only NIfTI-1/2 (single file or pair) is ours.
    if not isinstance(image, nib.Nifti1Pair):
        raise NiftiReadError(path, f"it is a {type(image).__name__}, not NIfTI")

    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise NiftiReadError(
            path,
            f"expected a 3D volume, got shape {image.shape}; split a 4D series into 3D files "
            "first (e.g. nibabel.funcs.four_to_three) and pick the volume to use",
        )
    try:
        # The array proxy applies scl_slope / scl_inter as it reads.
        values = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise NiftiReadError(path, f"the voxel data is truncated or corrupt ({err})") from err
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiReadError(path, f"the header's affine is degenerate:\n{affine}")
    return Volume(values=values, affine=affine)
