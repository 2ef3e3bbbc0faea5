"""Windows against the DICOM spec's piecewise definitions and pydicom's own windowing."""

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_windowing

from radfm_jax.data.windows import WINDOW_PRESETS, apply_window, resolve_window, window_stack
from radfm_jax.errors import ConfigError


def test_linear_window_hand_values_from_ps3_3():
    # Lung window c=-600, w=1500: PS3.3 C.11.2.1.2.1 gives 0 at or below
    # c - 0.5 - (w-1)/2 = -1350, 1 above c - 0.5 + (w-1)/2 = 149, 0.5 at c - 0.5 = -600.5.
    hu = np.array([-3000, -1350, -600.5, 149, 149.5, 3000], np.float32)
    expected = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(apply_window(hu, -600, 1500), expected, atol=1e-6)
    # One HU above the lower edge: 1 / (w - 1) (to float32 resolution near 0.5, ~6e-8).
    np.testing.assert_allclose(apply_window(np.float32(-1349), -600, 1500), 1 / 1499, atol=1e-7)


def test_width_one_is_a_threshold_at_center_minus_half():
    np.testing.assert_array_equal(apply_window(np.array([9.0, 9.5, 9.6, 10.0]), 10, 1),
                                  [0, 0, 1, 1])


def _pydicom_window(values: np.ndarray, center: float, width: float, function: str):
    """pydicom's windowing, rescaled from its output range (16-bit signed here) to [0, 1]."""
    ds = pydicom.Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 16, 1
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    y_min, y_max = -(2**15), 2**15 - 1
    return (apply_windowing(values.astype(np.float64), ds) - y_min) / (y_max - y_min)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("name", sorted(WINDOW_PRESETS))
def test_presets_match_pydicom_windowing(name, function):
    hu = np.arange(-1100, 2500, 0.5).astype(np.float32)
    center, width = WINDOW_PRESETS[name]
    ours = apply_window(hu, center, width, function)
    assert ours.dtype == np.float32 and ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(ours, _pydicom_window(hu, center, width, function), atol=2e-6)


def test_resolve_window_names_and_pairs():
    assert resolve_window("bone") == WINDOW_PRESETS["bone"]
    assert resolve_window((40, 80)) == (40.0, 80.0)
    with pytest.raises(ConfigError, match="unknown window preset 'lungs'.*abdomen, bone, brain"):
        resolve_window("lungs")
    with pytest.raises(ConfigError, match="width of at least 1"):
        resolve_window((40, 0.5))
    with pytest.raises(ConfigError, match=r"\(center, width\) pair"):
        resolve_window((1, 2, 3))


def test_window_stack_channels_are_the_single_windows():
    hu = np.random.default_rng(0).uniform(-1200, 2000, (3, 5, 7)).astype(np.float32)
    stacked = window_stack(hu, ["lung", "mediastinum", (400.0, 1800.0)])
    assert stacked.shape == (3, 5, 7, 3) and stacked.dtype == np.float32
    for channel, (c, w) in enumerate([(-600, 1500), (50, 350), (400, 1800)]):
        np.testing.assert_array_equal(stacked[..., channel], apply_window(hu, c, w))
    with pytest.raises(ConfigError, match="non-empty sequence"):
        window_stack(hu, [])
    with pytest.raises(ConfigError, match="non-empty sequence"):
        window_stack(hu, "lung")
