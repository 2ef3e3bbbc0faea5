"""read_nifti against nibabel's own real files and files written here byte by byte."""

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from radfm_jax.data.nifti import NiftiReadError, read_nifti

T1 = Path(data_path) / "anatomical.nii"  # a real T1 volume shipped by nibabel
EXAMPLE_4D = Path(data_path) / "example4d.nii.gz"  # two volumes


def test_real_t1_matches_nibabel():
    volume = read_nifti(T1)
    reference = nib.load(T1)
    assert volume.values.dtype == np.float32
    np.testing.assert_array_equal(volume.values, reference.get_fdata())
    np.testing.assert_array_equal(volume.affine, reference.affine)
    assert volume.spacing == (2.0, 2.0, 2.0)


def _set_scaling(path: Path, slope: float, inter: float) -> None:
    """Writes scl_slope / scl_inter straight into a NIfTI-1 header (bytes 112 and 116)."""
    raw = bytearray(path.read_bytes())
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    raw[112:120] = struct.pack(endian + "ff", slope, inter)
    path.write_bytes(bytes(raw))


def test_scl_slope_and_inter_are_applied(tmp_path):
    stored = np.arange(24, dtype=np.int16).reshape(2, 3, 4) * 7 - 50
    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(stored, np.eye(4)), path)
    _set_scaling(path, slope=2.0, inter=-1024.0)
    volume = read_nifti(path)
    np.testing.assert_array_equal(volume.values, stored.astype(np.float32) * 2.0 - 1024.0)
    assert volume.values.dtype == np.float32


def test_singleton_fourth_dimension_is_squeezed(tmp_path):
    data = np.random.default_rng(0).normal(size=(4, 5, 6, 1)).astype(np.float32)
    path = tmp_path / "one_volume.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0])), path)
    volume = read_nifti(path)
    np.testing.assert_array_equal(volume.values, data[..., 0])
    assert volume.spacing == (0.5, 0.5, 2.0)


def test_real_4d_series_is_refused():
    with pytest.raises(NiftiReadError, match=r"3D volume.*\(128, 96, 24, 2\)") as err:
        read_nifti(EXAMPLE_4D)
    assert str(EXAMPLE_4D) in str(err.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_names_the_path(tmp_path, suffix):
    raw = T1.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    half = raw[: len(raw) // 2]
    path.write_bytes(gzip.compress(half) if suffix == ".nii.gz" else half)
    with pytest.raises(NiftiReadError, match="truncated") as err:
        read_nifti(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(T1.read_bytes())
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    with pytest.raises(NiftiReadError) as err:
        read_nifti(path)
    assert str(path) in str(err.value)


def test_non_nifti_and_missing_files(tmp_path):
    text = tmp_path / "notes.nii"
    text.write_text("not a volume\n" * 50)
    with pytest.raises(NiftiReadError, match="notes.nii"):
        read_nifti(text)
    mgh = tmp_path / "brain.mgz"
    nib.save(nib.MGHImage(np.zeros((2, 2, 2), np.float32), np.eye(4)), mgh)
    with pytest.raises(NiftiReadError, match="MGHImage, not NIfTI"):
        read_nifti(mgh)
    with pytest.raises(NiftiReadError, match="no such file"):
        read_nifti(tmp_path / "absent.nii")
