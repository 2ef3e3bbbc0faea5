"""Volume geometry against nibabel's reorientation, world-space ramps and hand-placed markers."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from nibabel.testing import data_path

from radfm_jax.data.nifti import read_nifti
from radfm_jax.data.volume import Volume
from radfm_jax.data.volume_ops import axcodes, crop_or_pad, reorient, resample, to_model_layout

T1 = Path(data_path) / "anatomical.nii"


def test_nibabel_t1_is_las():
    assert nib.aff2axcodes(nib.load(T1).affine) == ("L", "A", "S")


def test_reorient_matches_nibabel_canonical():
    volume = reorient(read_nifti(T1), "RAS")
    canonical = nib.as_closest_canonical(nib.load(T1))
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(volume.values, canonical.get_fdata())
    np.testing.assert_allclose(volume.affine, canonical.affine)


@pytest.mark.parametrize("target", ["RAS", "LPS", "SAR", "ipl"])
def test_reorient_keeps_every_voxel_at_its_world_position(target):
    original = read_nifti(T1)
    moved = reorient(original, target)
    assert axcodes(moved) == target.upper()
    rng = np.random.default_rng(0)
    voxels = rng.integers(0, original.values.shape, size=(20, 3))
    world = apply_affine(original.affine, voxels)
    back = np.rint(apply_affine(np.linalg.inv(moved.affine), world)).astype(int)
    np.testing.assert_array_equal(moved.values[tuple(back.T)], original.values[tuple(voxels.T)])


def test_reorient_rejects_bad_axis_codes():
    with pytest.raises(ValueError, match="3-letter axis code"):
        reorient(read_nifti(T1), "RRS")


def _ramp_volume(shape, spacing, origin):
    """values = 3x - 2y + 0.5z + 7 in world mm, on an LAS grid (x flipped)."""
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    xyz = apply_affine(affine, ijk)
    values = 3 * xyz[..., 0] - 2 * xyz[..., 1] + 0.5 * xyz[..., 2] + 7
    return Volume(values=values.astype(np.float32), affine=affine)


@pytest.mark.parametrize("antialias", [False, True])
def test_resample_keeps_a_world_ramp(antialias):
    volume = _ramp_volume((40, 30, 12), (0.8, 0.7, 2.5), origin=(20.0, -10.0, 5.0))
    out = resample(volume, (1.5, 1.5, 1.5), antialias=antialias)
    assert out.spacing == pytest.approx((1.5, 1.5, 1.5))
    # Shape follows extent / spacing: 40*0.8/1.5 = 21.3, 30*0.7/1.5 = 14, 12*2.5/1.5 = 20.
    assert out.values.shape == (21, 14, 20)
    # Interior voxels (away from the edge where samples repeat the border) hold the ramp's value
    # at their new world position; linear interpolation of a linear function is exact.
    ijk = np.stack(np.meshgrid(*[np.arange(3, n - 3) for n in out.values.shape], indexing="ij"), -1)
    xyz = apply_affine(out.affine, ijk)
    expected = 3 * xyz[..., 0] - 2 * xyz[..., 1] + 0.5 * xyz[..., 2] + 7
    got = out.values[3:-3, 3:-3, 3:-3]
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())


def test_resample_keeps_the_grid_centre():
    volume = _ramp_volume((40, 30, 12), (0.8, 0.7, 2.5), origin=(20.0, -10.0, 5.0))
    out = resample(volume, (1.1, 2.0, 0.9))
    centre = lambda v: apply_affine(v.affine, (np.asarray(v.values.shape) - 1) / 2)  # noqa: E731
    np.testing.assert_allclose(centre(out), centre(volume), atol=1e-9)
    assert axcodes(out) == axcodes(volume)


def test_resample_antialias_averages_fine_stripes():
    stripes = np.zeros((32, 32, 8), np.float32)
    stripes[::2] = 1.0  # one-voxel stripes along i
    out = resample(Volume(stripes, np.eye(4)), (4.0, 1.0, 1.0), antialias=True)
    np.testing.assert_allclose(out.values[1:-1], 0.5, atol=0.05)


def test_crop_or_pad_is_centred():
    values = np.arange(5 * 4).reshape(5, 4)
    out = crop_or_pad(values, (3, 7), fill=-1)
    expected = np.full((3, 7), -1)
    expected[:, 1:5] = values[1:4]  # crop 5 -> 3 drops one row each end; pad 4 -> 7 is 1 + 2
    np.testing.assert_array_equal(out, expected)
    channels = np.ones((2, 2, 3))
    assert crop_or_pad(channels, (4, 4)).shape == (4, 4, 3)


def test_model_layout_is_radiological():
    # A RAS volume with one marker near the patient's right, anterior, superior corner.
    shape = (6, 5, 4)
    values = np.zeros(shape, np.float32)
    values[5, 4, 3] = 1.0  # i max = most right, j max = most anterior, k max = most superior
    values[0, 0, 0] = 2.0  # left, posterior, inferior
    layout = to_model_layout(Volume(values, np.eye(4)))
    assert layout.shape == (4, 5, 6)  # (D, H, W) = (k, j, i)
    # Superior is the last slice, anterior the top row, patient's right the left column.
    assert layout[3, 0, 0] == 1.0
    assert layout[0, 4, 5] == 2.0


def test_model_layout_requires_the_stated_orientation():
    with pytest.raises(ValueError, match=r"reorient\(volume, 'RAS'\)"):
        to_model_layout(read_nifti(T1))
