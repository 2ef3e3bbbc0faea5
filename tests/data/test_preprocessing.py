"""PreprocessSpec: recording, fingerprints, mismatch errors, and applying it to images and the
real nibabel T1 volume."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from radfm_jax.data import windows
from radfm_jax.data.nifti import read_nifti
from radfm_jax.data.preprocessing import PreprocessSpec, check_matches
from radfm_jax.errors import ConfigError

T1 = Path(data_path) / "anatomical.nii"

CT_SPEC = PreprocessSpec(kind="volume3d", size=(24, 40, 32), windows=("lung", (40.0, 400.0)),
                         spacing=(1.5, 1.5, 1.5))
CXR_SPEC = PreprocessSpec(kind="image2d", size=(64, 64), resize="crop")


def test_importing_the_spec_does_not_import_jax():
    code = "import sys, radfm_jax.data.preprocessing; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("spec", [CT_SPEC, CXR_SPEC])
def test_metadata_round_trips_through_json(spec):
    metadata = json.loads(json.dumps(spec.to_metadata()))
    assert metadata["version"] == 1
    assert PreprocessSpec.from_metadata(metadata) == spec
    assert PreprocessSpec.from_metadata(metadata).fingerprint() == spec.fingerprint()


def test_channels_follow_windows():
    assert CT_SPEC.channels == 2 and CT_SPEC.to_metadata()["channels"] == 2
    assert CXR_SPEC.channels == 1


def test_fingerprint_is_stable_and_changes_with_every_field():
    same = PreprocessSpec(kind="volume3d", size=[24, 40, 32], windows=["lung", [40, 400]],
                          spacing=[1.5, 1.5, 1.5])
    assert same.fingerprint() == CT_SPEC.fingerprint()
    assert len(CT_SPEC.fingerprint()) == 12
    changes = {"size": (24, 40, 40), "resize": "crop", "windows": ("lung",),
               "orientation": "LAS", "spacing": (1.5, 1.5, 3.0)}
    # Every field but version (only one version exists) is covered.
    all_fields = {f.name for f in dataclasses.fields(PreprocessSpec)}
    assert set(changes) | {"version", "kind"} == all_fields
    prints = {CT_SPEC.fingerprint()}
    for field, value in changes.items():
        prints.add(dataclasses.replace(CT_SPEC, **{field: value}).fingerprint())
    prints.add(PreprocessSpec(kind="image2d", size=(24, 24), windows=CT_SPEC.windows).fingerprint())
    assert len(prints) == len(changes) + 2


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(kind="image3d", size=(8, 8)), "preprocess.kind"),
        (dict(kind="image2d", size=(8, 16)), "square"),
        (dict(kind="volume3d", size=(8, 8)), r"preprocess.size.*3 positive integers"),
        (dict(kind="image2d", size=(8, 8), resize="stretch"), "preprocess.resize"),
        (dict(kind="image2d", size=(8, 8), windows=("lungs",)), "preprocess.windows.*lungs"),
        (dict(kind="image2d", size=(8, 8), windows="lung"), r"give a tuple, e.g. \('lung',\)"),
        (dict(kind="volume3d", size=(8, 8, 8), orientation="RAR"), "preprocess.orientation"),
        (dict(kind="volume3d", size=(8, 8, 8), spacing=(1.0, 0.0, 1.0)), "preprocess.spacing"),
        (dict(kind="image2d", size=(8, 8), spacing=(1.0, 1.0, 1.0)), "volumes only"),
        (dict(version=2, kind="image2d", size=(8, 8)), "preprocess.version"),
    ],
)
def test_validation_names_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        PreprocessSpec(**fields)


def test_check_matches_lists_every_difference():
    recorded = json.loads(json.dumps(CT_SPEC.to_metadata()))
    check_matches(recorded, CT_SPEC, dataset="ct_rate")  # identical: no error
    requested = dataclasses.replace(CT_SPEC, size=(32, 40, 32), windows=("lung",))
    with pytest.raises(ConfigError) as err:
        check_matches(recorded, requested, dataset="ct_rate")
    message = str(err.value)
    assert "'ct_rate'" in message and "Rebuild the data set" in message
    assert "size: recorded [24, 40, 32], requested [32, 40, 32]" in message
    assert "windows: recorded ['lung', [40.0, 400.0]], requested ['lung']" in message
    assert "channels: recorded 2, requested 1" in message
    assert "spacing" not in message and "orientation" not in message


def test_check_matches_without_a_record():
    with pytest.raises(ConfigError, match="records no preprocessing spec.*rebuild"):
        check_matches(None, CT_SPEC, dataset="ct_rate")


def test_apply_values_equals_the_lung_window_reference():
    hu = np.random.default_rng(0).uniform(-1200, 600, size=(48, 48)).astype(np.float32)
    spec = PreprocessSpec(kind="image2d", size=(48, 48), windows=("lung", "bone"))
    out = spec.apply_values(hu)
    assert out.shape == (48, 48, 2) and out.dtype == np.uint8
    for channel, name in enumerate(["lung", "bone"]):
        center, width = windows.WINDOW_PRESETS[name]
        reference = np.rint(windows.apply_window(hu, center, width) * 255).astype(np.uint8)
        np.testing.assert_array_equal(out[..., channel], reference)


def test_apply_values_without_windows_scales_min_max():
    values = np.array([[-100.0, 0.0], [50.0, 100.0]], np.float32)
    out = PreprocessSpec(kind="image2d", size=(2, 2)).apply_values(values)
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [191, 255]])  # 255 * [0, .5, .75, 1]


def test_apply_image_pads_to_a_square():
    image = np.full((30, 60), 0.5, np.float32)
    out = PreprocessSpec(kind="image2d", size=(20, 20), resize="pad").apply_image(image)
    assert out.shape == (20, 20, 1) and out.dtype == np.uint8
    # 30x60 -> 10x20, centred rows 5..14 hold round(0.5 * 255) = 128.
    assert np.all(out[5:15, :, 0] == 128) and np.all(out[:5] == 0) and np.all(out[15:] == 0)


def test_apply_volume_on_the_real_t1():
    spec = PreprocessSpec(kind="volume3d", size=(40, 48, 48), spacing=(2.0, 2.0, 2.0))
    out = spec.apply_volume(read_nifti(T1))
    assert out.shape == (40, 48, 48, 1) and out.dtype == np.uint8
    # At the T1's own 2 mm spacing nothing is interpolated: the output is nibabel's canonical
    # (RAS) array, min-max scaled, laid out (k, j, i) with j and i reversed, centred in the box.
    canonical = nib.as_closest_canonical(nib.load(T1)).get_fdata()  # (33, 41, 25) RAS
    scaled = (canonical - canonical.min()) / (canonical.max() - canonical.min())
    expected_layout = np.rint(scaled[::-1, ::-1, :].transpose(2, 1, 0) * 255)  # (25, 41, 33)
    d0, h0, w0 = (40 - 25) // 2, (48 - 41) // 2, (48 - 33) // 2
    np.testing.assert_array_equal(out[d0:d0 + 25, h0:h0 + 41, w0:w0 + 33, 0], expected_layout)
    assert np.all(out[:d0] == 0) and np.all(out[d0 + 25:] == 0)


def test_apply_volume_without_spacing_fits_the_box():
    # The T1 spans 66 x 82 x 50 mm (i, j, k); box (D, H, W) = (20, 20, 20) along (k, j, i).
    spec = PreprocessSpec(kind="volume3d", size=(20, 20, 20), resize="pad",
                          windows=((300.0, 600.0),))
    out = spec.apply_volume(read_nifti(T1))
    assert out.shape == (20, 20, 20, 1)
    # "pad": 82 mm / 20 voxels = 4.1 mm voxels, so j fills H and the other axes are padded.
    content = out[..., 0] > 0
    assert content.any(axis=(0, 2)).sum() == 20
    assert content.any(axis=(0, 1)).sum() <= round(66 / 4.1)


def test_apply_checks_the_kind():
    with pytest.raises(ConfigError, match="apply_volume needs a volume3d spec"):
        CXR_SPEC.apply_volume(read_nifti(T1))
