"""DICOM reading against real files from pydicom / pydicom-data, with pydicom's own LUT
functions and header arithmetic as the references."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels.decoders.base import Decoder

from radfm_jax.data.dicom import DicomReadError, read_dicom, read_series, to_display
from radfm_jax.errors import ConfigError


def sample(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None and Path(path).is_file(), f"pydicom-data lacks {name}"
    return path


def _rescale_to_unit(values, low, high):
    return (values - low) / (high - low)


# --------------------------------------------------------------------------------------------
# Projection radiograph: CR chest, MONOCHROME1, 15-bit, JPEG 2000 variants
# --------------------------------------------------------------------------------------------


def test_cr_display_matches_pydicom_voi_then_inverted():
    path = sample("RG1_UNCI.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # pydicom's window output spans the stored range of unsigned 15-bit values.
    reference = 1 - _rescale_to_unit(voi, 0, 2**15 - 1)
    shown = to_display(path)
    assert shown.dtype == np.float32 and shown.shape == (ds.Rows, ds.Columns)
    np.testing.assert_allclose(shown, reference, atol=1e-5)
    # Inverted the right way round: lung fields dark, mediastinum and spine bright.
    right_lung, mediastinum = shown[550:750, 350:550], shown[550:750, 850:1000]
    assert right_lung.mean() < mediastinum.mean() - 0.2


def test_cr_header_fields():
    image = read_dicom(sample("RG1_UNCI.dcm"))
    assert (image.modality, image.photometric, image.window) == ("CR", "MONOCHROME1",
                                                                (15000.0, 30000.0))
    assert image.pixel_spacing is None  # the file stores 0\0
    assert image.image_position is None and image.voi_lut is None


def test_jpeg2000_lossless_and_lossy_decode():
    # Clunie's sample set: *_UNCR is the original, *_J2KR its reversible JPEG 2000 encoding;
    # *_J2KI is the 10:1 irreversible encoding and *_UNCI that encoding decompressed.
    original = read_dicom(sample("RG1_UNCR.dcm")).values
    np.testing.assert_array_equal(read_dicom(sample("RG1_J2KR.dcm")).values, original)
    lossy = read_dicom(sample("RG1_J2KI.dcm")).values
    np.testing.assert_array_equal(lossy, read_dicom(sample("RG1_UNCI.dcm")).values)
    # Lossy against the original: measured max 403, mean 50.1 stored units on a range of
    # 25605 (1.6% / 0.2%). Bounds at 2% / 0.5% of the range allow 10:1 compression and no more:
    # a wrong bit depth, sign or frame would be off by a large fraction of the range.
    error = np.abs(lossy - original)
    value_range = np.ptp(original)
    assert error.max() < 0.02 * value_range and error.mean() < 0.005 * value_range
    displayed = np.abs(to_display(sample("RG1_J2KI.dcm")) - to_display(sample("RG1_UNCR.dcm")))
    assert displayed.max() < 0.02 and displayed.mean() < 0.005  # measured 0.0134 / 0.0017


# --------------------------------------------------------------------------------------------
# CT: Hounsfield units, windows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["693_UNCI.dcm", "CT_small.dcm"])
def test_ct_values_are_hounsfield_units(name):
    path = sample(name)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    image = read_dicom(path)
    assert image.values.dtype == np.float32 and image.modality == "CT"
    np.testing.assert_array_equal(image.values, expected)
    assert image.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert image.image_position == tuple(float(v) for v in ds.ImagePositionPatient)


def test_ct_tissue_values():
    head = read_dicom(sample("693_UNCI.dcm")).values  # head CT in air
    assert abs(head[250:260, 5:15].mean() - (-1000)) < 30  # air inside the field of view
    chest = read_dicom(sample("CT_small.dcm")).values  # thorax slice at the spine
    assert -900 < chest[5:25, 3:20].mean() < -700  # lung parenchyma (measured -769)
    assert abs(chest[80:104, 10:110].mean()) < 60  # paraspinal muscle, ~water (measured 20)
    assert chest.max() > 700  # bone


def test_ct_preset_window_matches_spec_formula():
    hu = read_dicom(sample("CT_small.dcm")).values.astype(np.float64)
    c, w = 50.0, 350.0  # mediastinum (Radiopaedia W350 L50)
    low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    expected = np.where(hu <= low, 0.0,
                        np.where(hu > high, 1.0, (hu - (c - 0.5)) / (w - 1) + 0.5))
    np.testing.assert_allclose(to_display(sample("CT_small.dcm"), "mediastinum"), expected,
                               atol=1e-6)
    np.testing.assert_array_equal(to_display(sample("CT_small.dcm"), (c, w)),
                                  to_display(sample("CT_small.dcm"), "mediastinum"))


def test_ct_header_window_matches_pydicom():
    path = sample("693_UNCI.dcm")
    ds = pydicom.dcmread(path)
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    # pydicom's output range: signed 14-bit stored range through the rescale.
    low = -(2**13) * ds.RescaleSlope + ds.RescaleIntercept
    high = (2**13 - 1) * ds.RescaleSlope + ds.RescaleIntercept
    np.testing.assert_allclose(to_display(path), _rescale_to_unit(voi, low, high), atol=1e-5)


def test_voi_lut_sequence_matches_pydicom():
    path = sample("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    bits = ds.VOILUTSequence[0].LUTDescriptor[2]
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) / (2**bits - 1)
    image = read_dicom(path)
    assert image.voi_lut is not None
    np.testing.assert_allclose(to_display(image), reference, atol=1e-6)


def test_modality_lut_sequence_matches_pydicom():
    path = sample("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(read_dicom(path).values,
                                  apply_modality_lut(ds.pixel_array, ds))


def test_no_window_displays_min_max():
    values = read_dicom(sample("emri_small.dcm")).values
    shown = to_display(sample("emri_small.dcm"))
    np.testing.assert_allclose(shown, (values - values.min()) / (values.max() - values.min()),
                               atol=1e-6)


def test_bits_stored_masks_high_bits_and_sign_extends(tmp_path):
    # 12 stored bits, signed, in 16 allocated bits, with junk in the 4 unused high bits: the
    # value is the low 12 bits read as two's complement (PS3.5 8.1.1).
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    values = np.array([[-2048, -1, 0], [1, 1000, 2047]], np.int16)
    junk = np.array([[0x1000, 0x5000, 0xF000], [0xA000, 0x3000, 0x7000]], np.uint16)
    ds.Rows, ds.Columns = values.shape
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    ds.RescaleSlope, ds.RescaleIntercept = 2, -10
    ds.PixelData = ((values.view(np.uint16) & 0x0FFF) | junk).astype("<u2").tobytes()
    ds.save_as(tmp_path / "junk_bits.dcm")
    np.testing.assert_array_equal(read_dicom(tmp_path / "junk_bits.dcm").values,
                                  values * 2.0 - 10)


# --------------------------------------------------------------------------------------------
# MR multi-frame and compressed transfer syntaxes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "emri_small_jpeg_ls_lossless.dcm",
                                  "emri_small_big_endian.dcm"])
def test_multiframe_encodings_decode_like_uncompressed(name):
    reference = read_dicom(sample("emri_small.dcm"))
    image = read_dicom(sample(name))
    assert image.values.shape == reference.values.shape == (10, 64, 64)
    assert pydicom.dcmread(sample(name)).NumberOfFrames == 10
    np.testing.assert_array_equal(image.values, reference.values)


def test_frame_selection():
    path = sample("emri_small.dcm")
    every = read_dicom(path).values
    np.testing.assert_array_equal(read_dicom(path, frames=3).values, every[3])
    np.testing.assert_array_equal(read_dicom(path, frames=[7, 1]).values, every[[7, 1]])
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, every)
    with pytest.raises(ConfigError, match="frame 10 out of range; the file has 10"):
        read_dicom(path, frames=10)


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_jpeg_lossless_and_rle_match_pydicom(name):
    ds = pydicom.dcmread(sample(name))
    np.testing.assert_array_equal(read_dicom(sample(name)).values,
                                  apply_modality_lut(ds.pixel_array, ds))


# --------------------------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------------------------

GAP_MM = 2.5


def _write_series(folder: Path, orientation=None, n=5, seed=0) -> tuple[list, np.ndarray]:
    """n copies of CT_small along the slice normal, each with its own pixel offset, written
    under shuffled file names with instance numbers in reverse spatial order. Returns the
    per-position stored arrays and the first position."""
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    start = np.asarray(ds.ImagePositionPatient, float)
    names = np.random.default_rng(seed).permutation(n)
    stored = []
    for k in range(n):
        pixels = ds.pixel_array + np.int16(100 * k)
        stored.append(pixels)
        ds.PixelData = pixels.astype("<i2").tobytes()
        ds.ImagePositionPatient = list(start + k * GAP_MM * normal)
        ds.InstanceNumber = n - k
        ds.save_as(folder / f"slice_{names[k]:02d}.dcm")
    return stored, start


def test_series_sorted_by_position_with_affine(tmp_path):
    stored, start = _write_series(tmp_path)
    volume = read_series(tmp_path)
    dx = dy = 0.661468  # CT_small's PixelSpacing (row, column)
    # Axial IOP (1,0,0 / 0,1,0), normal +z, LPS -> RAS negates x and y:
    expected = np.array([
        [-dx, 0.0, 0.0, -start[0]],
        [0.0, -dy, 0.0, -start[1]],
        [0.0, 0.0, GAP_MM, start[2]],
        [0.0, 0.0, 0.0, 1.0],
    ])
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)
    assert volume.values.shape == (128, 128, 5) and volume.values.dtype == np.float32
    np.testing.assert_allclose(volume.spacing, (dx, dy, GAP_MM), atol=1e-6)
    for k in range(5):  # values[i, j, k] = slice k at row j, column i, in HU
        np.testing.assert_array_equal(volume.values[..., k], stored[k].T - 1024.0)


def test_series_oblique_orientation_affine(tmp_path):
    # Coronal: rows run to patient left (+x), columns to feet (-z); normal = row x column = +y.
    stored, start = _write_series(tmp_path, orientation=(1, 0, 0, 0, 0, -1), n=3, seed=1)
    volume = read_series(sorted(tmp_path.iterdir()))
    d = 0.661468
    expected = np.array([
        [-d, 0.0, 0.0, -start[0]],
        [0.0, 0.0, -GAP_MM, -start[1]],
        [0.0, -d, 0.0, start[2]],
        [0.0, 0.0, 0.0, 1.0],
    ])
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)
    np.testing.assert_array_equal(volume.values[..., 2], stored[2].T - 1024.0)


def test_series_rejects_mismatched_orientation(tmp_path):
    _write_series(tmp_path, n=3)
    odd = tmp_path / "slice_01.dcm"
    ds = pydicom.dcmread(odd)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(odd)
    with pytest.raises(ConfigError, match="not slices of one series: ImageOrientationPatient"):
        read_series(tmp_path)


def test_series_rejects_other_series_uneven_gaps_and_duplicates(tmp_path):
    _write_series(tmp_path, n=4)
    files = sorted(tmp_path.iterdir())
    positions = {f: pydicom.dcmread(f).ImagePositionPatient[2] for f in files}
    by_z = sorted(files, key=positions.get)

    with pytest.raises(ConfigError, match="uneven slice spacing: 5 mm"):
        read_series([f for f in files if f != by_z[1]])  # a missing slice

    with pytest.raises(ConfigError, match="same slice position"):
        read_series([*files, by_z[2]])

    other = pydicom.dcmread(files[0])
    other.SeriesInstanceUID = pydicom.uid.generate_uid()
    other.save_as(files[0])
    with pytest.raises(ConfigError, match="different SeriesInstanceUID") as error:
        read_series(tmp_path)
    assert str(other.SeriesInstanceUID) not in str(error.value)  # UIDs stay out of messages


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "truncated"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "truncated"),
        ("rtplan_truncated.dcm", "no pixel data"),
        ("rtplan.dcm", "no pixel data"),
        ("no_meta.dcm", "not a DICOM file"),
        ("ExplVR_LitEndNoMeta.dcm", "not a DICOM file"),
        ("meta_missing_tsyntax.dcm", "no Transfer Syntax UID"),
        ("SC_rgb.dcm", "'RGB' is not supported"),
    ],
)
def test_bad_files_raise_with_path_and_reason(name, reason):
    path = sample(name)
    with pytest.raises(DicomReadError, match=reason) as error:
        read_dicom(path)
    assert path in str(error.value) and error.value.path == path


def test_non_dicom_and_missing_files(tmp_path):
    text = tmp_path / "report.txt"
    text.write_text("FINDINGS: no acute cardiopulmonary abnormality.\n" * 10)
    with pytest.raises(DicomReadError, match="not a DICOM file") as error:
        read_dicom(text)
    assert str(text) in str(error.value)
    with pytest.raises(DicomReadError, match="cannot read the file"):
        read_dicom(tmp_path / "missing.dcm")


def test_missing_decoder_plugin_names_the_package(monkeypatch):
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(DicomReadError, match="pip install pylibjpeg pylibjpeg-openjpeg"):
        read_dicom(sample("emri_small_jpeg_2k_lossless.dcm"))


def _with_raw_value(source: str, tag: int, vr: str, text: str, out: Path) -> Path:
    """A copy of `source` whose element `tag` holds `text` as written, unvalidated (as a damaged
    or non-conformant writer leaves it)."""
    ds = pydicom.dcmread(source)
    tag = pydicom.tag.Tag(tag)
    ds._dict[tag] = pydicom.dataelem.RawDataElement(tag, vr, len(text), text.encode(), 0, False, True)
    ds.save_as(out)
    return out


@pytest.mark.parametrize(
    ("keyword", "tag", "vr", "text"),
    [
        ("NumberOfFrames", 0x00280008, "IS", "two "),
        ("RescaleSlope", 0x00281053, "DS", "x "),
        ("RescaleIntercept", 0x00281052, "DS", "-1O24 "),
        ("ImagePositionPatient", 0x00200032, "DS", "a\\b\\c "),
        ("ImageOrientationPatient", 0x00200037, "DS", "1\\0\\0\\0\\1\\zero "),
        ("PixelSpacing", 0x00280030, "DS", "q\\1 "),
        ("WindowCenter", 0x00281050, "DS", "40HU"),
    ],
)
def test_malformed_numeric_header_fields_are_read_errors_naming_the_field(tmp_path, keyword, tag, vr, text):
    path = _with_raw_value(sample("CT_small.dcm"), tag, vr, text, tmp_path / f"{keyword}.dcm")
    with pytest.raises(DicomReadError, match=f"header field {keyword} holds") as error:
        read_dicom(path)
    assert str(path) in str(error.value)
