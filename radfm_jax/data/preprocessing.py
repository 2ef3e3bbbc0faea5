"""One declarative, versioned preprocessing spec per experiment, from raw pixels / voxels to the
uint8 arrays a prepared data set stores.

A builder applies the spec and records ``spec.to_metadata()`` with the data set; training builds
the spec it expects from its config and calls ``check_matches`` on the recorded one, so data
prepared one way is never silently trained on as if it were prepared another way.

``version`` names the meaning of the fields: bump PREPROCESS_VERSION whenever the same field
values would produce different arrays (a changed interpolation, quantisation or layout), so
data sets built by older code are detected as different.

Importing this module does not import JAX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from radfm_jax.data.image_files import resize_square
from radfm_jax.data.volume import Volume
from radfm_jax.data.volume_ops import (
    check_axcodes,
    crop_or_pad,
    reorient,
    resample,
    to_model_layout,
)
from radfm_jax.data.windows import resolve_window, window_stack
from radfm_jax.errors import ConfigError

PREPROCESS_VERSION = 1

Window = str | tuple[float, float]


def _quantize(image01: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by rounding to the nearest of 256 levels."""
    return np.rint(np.clip(image01, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scales values to [0, 1] by their own range (all zeros for a constant array)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreprocessSpec:
    """How raw images / volumes become a prepared data set's uint8 arrays.

    kind: "image2d" (radiographs; size (S, S)) or "volume3d" (CT / MR; size (D, H, W)).
    resize: 2D: "pad" fits the whole image in the square (borders 0), "crop" fills it with the
        centred square. 3D without spacing: the volume is scaled (same mm per voxel on every
        axis) to fit inside ("pad") or cover ("crop") the (D, H, W) box; with a fixed spacing
        the physical scale is fixed and each axis is centre-cropped or padded as needed.
    windows: CT windows, one output channel each (preset names of windows.WINDOW_PRESETS or
        (center, width) pairs in HU). Empty: 2D display images are used as they are (the
        DICOM reader's VOI LUT) and raw values are scaled by their min-max; one channel.
    orientation: 3D only; the voxel axes are reoriented to it before the layout. "RAS" gives
        the radiological convention (see volume_ops.to_model_layout).
    spacing: 3D only; (i, j, k) voxel size in mm after reorientation, or None (fit the box).
    """

    version: int = PREPROCESS_VERSION
    kind: Literal["image2d", "volume3d"]
    size: tuple[int, ...]
    resize: Literal["pad", "crop"] = "pad"
    windows: tuple[Window, ...] = ()
    orientation: str = "RAS"
    spacing: tuple[float, float, float] | None = None

    def __post_init__(self):
        self.validate()
        # Normalise lists / numpy numbers to tuples of Python numbers so equal specs compare,
        # hash and fingerprint equally.
        normalised = {
            "size": tuple(int(s) for s in self.size),
            "windows": tuple(w if isinstance(w, str) else tuple(float(v) for v in w)
                             for w in self.windows),
            "orientation": self.orientation.upper(),
            "spacing": None if self.spacing is None else tuple(float(s) for s in self.spacing),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)  # frozen: set once, during construction

    @property
    def channels(self) -> int:
        """Output channels: one per window, or one without windows."""
        return max(1, len(self.windows))

    def validate(self) -> None:
        """Raises ConfigError naming the first bad field and how to fix it."""
        if self.version != PREPROCESS_VERSION:
            raise ConfigError(
                f"preprocess.version is {self.version!r}, but this code implements version "
                f"{PREPROCESS_VERSION}; rebuild the data set with this code (or use the code "
                "that built it)"
            )
        if self.kind not in ("image2d", "volume3d"):
            raise ConfigError(
                f"preprocess.kind is {self.kind!r}; use 'image2d' (radiographs) or 'volume3d' "
                "(CT / MR volumes)"
            )
        dims = 2 if self.kind == "image2d" else 3
        example = "(224, 224)" if dims == 2 else "(64, 128, 128)"
        if (
            isinstance(self.size, (str, bytes))
            or not isinstance(self.size, Sequence)
            or len(self.size) != dims
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                       for s in self.size)
        ):
            raise ConfigError(
                f"preprocess.size is {self.size!r}; a {self.kind} spec needs {dims} positive "
                f"integers, e.g. {example}"
            )
        if dims == 2 and self.size[0] != self.size[1]:
            raise ConfigError(f"preprocess.size is {tuple(self.size)}; 2D images are square, "
                              f"e.g. ({self.size[0]}, {self.size[0]})")
        if self.resize not in ("pad", "crop"):
            raise ConfigError(f"preprocess.resize is {self.resize!r}; use 'pad' or 'crop'")
        if isinstance(self.windows, str):
            raise ConfigError(f"preprocess.windows is the string {self.windows!r}; give a tuple, "
                              f"e.g. ({self.windows!r},)")
        for window in self.windows:
            try:
                resolve_window(window)
            except ConfigError as err:
                raise ConfigError(f"preprocess.windows: {err}") from None
        if not isinstance(self.orientation, str):
            raise ConfigError(f"preprocess.orientation is {self.orientation!r}; give axis codes "
                              "such as 'RAS'")
        try:
            check_axcodes(self.orientation)
        except ValueError as err:
            raise ConfigError(f"preprocess.orientation: {err}") from None
        if self.spacing is not None:
            if dims == 2:
                raise ConfigError("preprocess.spacing is set for an image2d spec; spacing is for "
                                  "volumes only, set it to None")
            try:
                spacing = [float(s) for s in self.spacing]
            except (TypeError, ValueError):
                spacing = []
            if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
                raise ConfigError(f"preprocess.spacing is {self.spacing!r}; give three positive "
                                  "voxel sizes in mm, e.g. (1.5, 1.5, 1.5), or None")

    # ---------------------------------------------------------------------------------------
    # Recording
    # ---------------------------------------------------------------------------------------

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe dict of every field plus the derived channel count."""
        return {
            "version": self.version,
            "kind": self.kind,
            "size": list(self.size),
            "resize": self.resize,
            "windows": [w if isinstance(w, str) else list(w) for w in self.windows],
            "orientation": self.orientation,
            "spacing": None if self.spacing is None else list(self.spacing),
            "channels": self.channels,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PreprocessSpec:
        """The spec a to_metadata() dict (e.g. read back from JSON) describes."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(metadata) - fields - {"channels"})
        if unknown:
            raise ConfigError(f"preprocessing metadata has unknown fields {unknown}; it was "
                              f"written by other code (known: {sorted(fields)})")
        values = {k: v for k, v in metadata.items() if k in fields}
        values["windows"] = tuple(w if isinstance(w, str) else tuple(w)
                                  for w in values.get("windows", ()))
        spec = cls(**values)
        if "channels" in metadata and metadata["channels"] != spec.channels:
            raise ConfigError(f"preprocessing metadata says {metadata['channels']} channels but "
                              f"its windows give {spec.channels}; the record is inconsistent")
        return spec

    def fingerprint(self) -> str:
        """12 hex digits of SHA-256 over the canonical JSON of to_metadata()."""
        canonical = json.dumps(self.to_metadata(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    # ---------------------------------------------------------------------------------------
    # Applying
    # ---------------------------------------------------------------------------------------

    def _require(self, kind: str, method: str) -> None:
        if self.kind != kind:
            raise ConfigError(f"{method} needs a {kind} spec, but this one is {self.kind}")

    def _square(self, channels01: np.ndarray) -> np.ndarray:
        """(H, W, C) float [0, 1] -> (S, S, C) uint8, each channel resized alike."""
        size = self.size[0]
        resized = [resize_square(channels01[..., c], size, self.resize)
                   for c in range(channels01.shape[-1])]
        return _quantize(np.stack(resized, axis=-1))

    def apply_image(self, image01: np.ndarray) -> np.ndarray:
        """A display-ready float (H, W) image in [0, 1] -> uint8 (S, S, 1)."""
        self._require("image2d", "apply_image")
        image01 = np.asarray(image01, dtype=np.float32)
        if image01.ndim != 2:
            raise ValueError(f"apply_image takes an (H, W) image, got shape {image01.shape}")
        return self._square(image01[..., None])

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        """A (H, W) slice in modality units (HU for CT) -> uint8 (S, S, C) through the windows."""
        self._require("image2d", "apply_values")
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"apply_values takes an (H, W) array, got shape {values.shape}")
        return self._square(self._intensities(values))

    def apply_volume(self, volume: Volume) -> np.ndarray:
        """Volume -> uint8 (D, H, W, C): reorient, resample, model layout, crop / pad, windows.

        Padding is 0 in every channel (black, as air is in CT windows). Without windows the
        min-max range is the whole resampled volume's, before cropping.
        """
        self._require("volume3d", "apply_volume")
        oriented = reorient(volume, self.orientation)
        resampled = resample(oriented, self.spacing or self._fit_spacing(oriented))
        layout = to_model_layout(resampled, self.orientation)
        if self.windows:  # crop first so only kept voxels are windowed
            layout = crop_or_pad(layout, np.minimum(layout.shape, self.size))
        # Pad after quantising: the padding is then written as uint8, 4x fewer bytes.
        return crop_or_pad(_quantize(self._intensities(layout)), self.size, fill=0)

    def _fit_spacing(self, volume: Volume) -> tuple[float, float, float]:
        """Isotropic spacing scaling the volume to fit ("pad") or cover ("crop") the box."""
        extent = np.asarray(volume.spacing) * np.asarray(volume.values.shape)  # mm along i, j, k
        box = np.asarray(self.size[::-1], dtype=np.float64)  # layout (D, H, W) = axes (k, j, i)
        per_axis = extent / box
        mm = float(per_axis.max() if self.resize == "pad" else per_axis.min())
        return (mm, mm, mm)

    def _intensities(self, values: np.ndarray) -> np.ndarray:
        """(...,) values -> (..., C) float [0, 1]: the windows, or min-max without windows."""
        if self.windows:
            return window_stack(values, self.windows)
        return _min_max(values)[..., None]


def check_matches(recorded: Mapping[str, Any] | None, expected: PreprocessSpec, *,
                  dataset: str) -> None:
    """Raises ConfigError listing every field where a data set's recorded preprocessing differs
    from what the config requests (recorded vs requested)."""
    requested = expected.to_metadata()
    if not isinstance(recorded, Mapping):
        raise ConfigError(
            f"data set {dataset!r} records no preprocessing spec (found {recorded!r}); it was "
            "built by older code: rebuild it"
        )
    # A JSON round trip makes tuples lists, as in a record read back from disk.
    recorded = json.loads(json.dumps(dict(recorded)))
    differing = [
        f"  {key}: recorded {recorded.get(key, '<missing>')!r}, "
        f"requested {requested.get(key, '<missing>')!r}"
        for key in [*requested, *sorted(set(recorded) - set(requested))]
        if recorded.get(key, "<missing>") != requested.get(key, "<missing>")
    ]
    if differing:
        raise ConfigError(
            f"data set {dataset!r} was prepared with different preprocessing than the config "
            "requests:\n" + "\n".join(differing) + "\n"
            "Rebuild the data set with this config, or change the config's preprocessing to "
            "match the recorded one."
        )
