"""Geometric operations on a Volume: reorient, resample to a spacing, centred crop / pad, and the
model's (D, H, W) layout.

Every operation that changes the voxel grid returns a new affine, so a voxel's world (RAS+ mm)
position stays known after it; tests check that against nibabel's own reorientation.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np
from scipy import ndimage

from radfm_jax.data.volume import Volume

_AXIS_PAIRS = ("LR", "PA", "IS")


def check_axcodes(codes: str) -> str:
    """Returns codes upper-cased if it names one end of each of L/R, P/A, I/S once, e.g. "RAS"."""
    upper = str(codes).upper()
    ends = sorted(_AXIS_PAIRS.index(pair) for c in upper for pair in _AXIS_PAIRS if c in pair)
    if len(upper) != 3 or ends != [0, 1, 2]:
        raise ValueError(
            f"orientation {codes!r} is not a 3-letter axis code; use one letter from each of "
            "L/R, P/A, I/S, e.g. 'RAS' (nibabel's canonical) or 'LPS' (DICOM's)"
        )
    return upper


def axcodes(volume: Volume) -> str:
    """The volume's closest axis codes, e.g. "LAS" (nibabel.aff2axcodes)."""
    return "".join(nio.aff2axcodes(volume.affine))


def reorient(volume: Volume, orientation: str = "RAS") -> Volume:
    """Flips / permutes the voxel axes so they point along `orientation` (any 3-letter axcode).

    Exact (no interpolation): the same voxels in another order, with the affine changed so every
    voxel keeps its world position. For an oblique scan the closest axes are chosen, as
    nibabel.as_closest_canonical does. The new values are a flipped / transposed view of the
    input's array (no copy: a CT volume is ~200 MB), like np.flip.
    """
    target = nio.axcodes2ornt(check_axcodes(orientation))
    transform = nio.ornt_transform(nio.io_orientation(volume.affine), target)
    values = nio.apply_orientation(volume.values, transform)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.values.shape)
    return Volume(values=values, affine=affine)


def resample(
    volume: Volume, spacing: Sequence[float], order: int = 1, antialias: bool = True
) -> Volume:
    """Resamples to voxels of `spacing` mm along the voxel axes i, j, k (scipy.ndimage).

    Convention (grid centres aligned): each axis gets n_new = max(1, round(n * s / s_new))
    voxels, so the extent n * s is kept up to one new voxel, and the centre of the new grid sits
    at the centre of the old one. New voxel index u samples old continuous index
    c_old + (u - c_new) * s_new / s with c = (n - 1) / 2, and the affine is updated to match
    (columns scaled to the new spacing, origin moved), so world positions stay exact. Samples
    up to half a new voxel outside the old voxel centres repeat the edge voxel.

    order is the spline order (0 nearest, 1 linear, 3 cubic). With antialias, an axis that is
    shrunk by a factor f is first smoothed by a Gaussian of sigma (f - 1) / 2 old voxels (as
    skimage.transform.resize), so thin structures do not alias into noise.
    """
    new_spacing = np.asarray(spacing, dtype=np.float64)
    if new_spacing.shape != (3,) or not np.all(new_spacing > 0):
        raise ValueError(f"spacing must be three positive numbers in mm, got {spacing!r}")
    old_spacing = np.asarray(volume.spacing, dtype=np.float64)
    old_shape = np.asarray(volume.values.shape)
    step = new_spacing / old_spacing  # old voxels per new voxel
    new_shape = np.maximum(1, np.round(old_shape / step)).astype(int)
    offset = (old_shape - 1) / 2 - (new_shape - 1) / 2 * step

    values = volume.values
    if antialias and np.any(step > 1):
        sigma = np.maximum(0.0, (step - 1) / 2)
        values = ndimage.gaussian_filter(values, sigma=sigma, mode="nearest")
    # A 1-D matrix is a diagonal scale: scipy then takes its fast separable path.
    values = ndimage.affine_transform(
        values, step, offset=offset, output_shape=tuple(new_shape), order=order, mode="nearest",
        prefilter=order > 1,
    ).astype(np.float32, copy=False)

    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * step[None, :]
    affine[:3, 3] = volume.affine[:3, :3] @ offset + volume.affine[:3, 3]
    return Volume(values=values, affine=affine)


def crop_or_pad(values: np.ndarray, shape: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """Centre-crops or pads the leading len(shape) axes of values to `shape`.

    On an odd difference the extra voxel is cropped from / padded at the end. Trailing axes
    (e.g. channels) are kept.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) > values.ndim or any(s < 1 for s in shape):
        raise ValueError(f"cannot crop / pad an array of shape {values.shape} to {shape}")
    crops, pads = [], []
    for n, target in zip(values.shape, shape):
        start = max(0, (n - target) // 2)
        crops.append(slice(start, start + min(n, target)))
        before = max(0, (target - n) // 2)
        pads.append((before, max(0, target - n) - before))
    cropped = values[tuple(crops)]
    pads += [(0, 0)] * (values.ndim - len(shape))
    if not any(p for pair in pads for p in pair):
        return cropped
    return np.pad(cropped, pads, mode="constant", constant_values=fill)


def to_model_layout(volume: Volume, orientation: str = "RAS") -> np.ndarray:
    """The (D, H, W) array models see, from a volume already in `orientation`.

    (D, H, W) = (voxel axis k, reversed axis j, reversed axis i), i.e. values[::-1, ::-1, :]
    transposed to (k, j, i). For a RAS volume this is the radiological display convention of an
    axial stack: D runs inferior -> superior (slice 0 is the lowest), H runs anterior ->
    posterior (row 0 at the front of the patient, top of the screen), W runs from the patient's
    right to left (the patient's right is on the image's left, as a radiologist reads it). For
    an LAS volume the same rule gives the neurological convention (patient's left on the left).
    """
    expected = check_axcodes(orientation)
    found = axcodes(volume)
    if found != expected:
        raise ValueError(
            f"to_model_layout expects a {expected} volume, got {found}; "
            f"call reorient(volume, {expected!r}) first"
        )
    return np.ascontiguousarray(volume.values[::-1, ::-1, :].transpose(2, 1, 0))
