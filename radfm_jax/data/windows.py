"""Intensity windows: map modality values (Hounsfield units for CT) to display intensities in
[0, 1] with the DICOM VOI window functions, by preset name or explicit (center, width)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radfm_jax.errors import ConfigError

# (center, width) in Hounsfield units: the usual CT reading windows as listed in Radiopaedia,
# "Windowing (CT)" (https://radiopaedia.org/articles/windowing-ct): brain W80 L40, lungs
# W1500 L-600, mediastinum W350 L50, bone W1800 L400, abdominal soft tissue W400 L50.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (50.0, 400.0),
}

# VOI LUT Function (0028,1056) values this module implements (PS3.3 C.11.2.1.2-3).
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

WindowSpec = str | tuple[float, float]


def resolve_window(spec: WindowSpec) -> tuple[float, float]:
    """A preset name or an explicit (center, width) as a float (center, width) pair."""
    if isinstance(spec, str):
        if spec not in WINDOW_PRESETS:
            raise ConfigError(
                f"unknown window preset {spec!r}; presets are {', '.join(sorted(WINDOW_PRESETS))}"
                " or give an explicit (center, width) pair"
            )
        return WINDOW_PRESETS[spec]
    try:
        center, width = (float(v) for v in spec)
    except (TypeError, ValueError):
        raise ConfigError(
            f"a window is a preset name or a (center, width) pair of numbers, got {spec!r}"
        ) from None
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise ConfigError(
            f"window (center={center}, width={width}) is invalid: DICOM requires a finite "
            "center and a width of at least 1"
        )
    return center, width


def apply_window(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """values -> float32 in [0, 1] by the DICOM VOI window function.

    LINEAR is PS3.3 C.11.2.1.2.1 with output range [0, 1]:
        x <= c - 0.5 - (w - 1) / 2  -> 0
        x >  c - 0.5 + (w - 1) / 2  -> 1
        else ((x - (c - 0.5)) / (w - 1) + 0.5)
    which is the middle expression clipped to [0, 1]; w == 1 is the threshold at c - 0.5.
    LINEAR_EXACT (C.11.2.1.3.2) drops the half-unit offsets; SIGMOID (C.11.2.1.3.1) is
    1 / (1 + exp(-4 (x - c) / w)).
    """
    x = np.asarray(values, dtype=np.float32)
    if width < 1 if function == "LINEAR" else width <= 0:
        raise ConfigError(f"window width {width} is too small for the {function} VOI function")
    center32, width32 = np.float32(center), np.float32(width)
    if function == "LINEAR":
        if width == 1:
            return (x > center32 - np.float32(0.5)).astype(np.float32)
        y = (x - (center32 - np.float32(0.5))) / (width32 - np.float32(1)) + np.float32(0.5)
    elif function == "LINEAR_EXACT":
        y = (x - center32) / width32 + np.float32(0.5)
    elif function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflow -> inf -> 0, the correct limit
            return (1 / (1 + np.exp(np.float32(-4) * (x - center32) / width32))).astype(np.float32)
    else:
        raise ConfigError(f"unknown VOI LUT function {function!r}; expected one of {VOI_FUNCTIONS}")
    return np.clip(y, 0, 1).astype(np.float32, copy=False)


def window_stack(values: np.ndarray, windows: Sequence[WindowSpec]) -> np.ndarray:
    """One channel per window: (...,) values -> (..., C) float32 in [0, 1] (e.g. the common
    lung / mediastinum / bone three-channel CT input)."""
    if isinstance(windows, str) or len(windows) == 0:
        raise ConfigError(
            f"window_stack takes a non-empty sequence of windows, got {windows!r}; "
            "e.g. ['lung', 'mediastinum', 'bone']"
        )
    return np.stack([apply_window(values, *resolve_window(w)) for w in windows], axis=-1)
