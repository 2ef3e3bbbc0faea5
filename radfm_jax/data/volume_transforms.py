"""Typed Grain transforms from prepared CT / MR volume records to model inputs.

A prepared volume record (data/builders/ct_rate, synthetic_ct) holds ``volume`` uint8
(D, H, W, C) — CT windows already applied as channels, RAS orientation, the model layout of
volume_ops.to_model_layout — plus ``report``, ``labels`` int8 and ids; synthetic_ct adds
``spacing`` float32 (3,), the voxel size in mm along (D, H, W). The transforms below turn it into
the same batch element as a radiograph, with a 3D image:

    {"image": float32 (D, H, W, C), "tokens": int32 (L,), "labels": int8 (N,)}

Intensities follow the 2D convention (uint8 / 255, then transforms.NormalizeImage's fixed
constants), so one checkpoint's expected input never depends on the data set.

Layout: in (D, H, W) = to_model_layout of a RAS volume, D runs inferior -> superior, H
anterior -> posterior and W from the patient's right to the patient's left. So the patient's
left-right axis is array axis 2 (W) of (D, H, W, C): that is the axis RandomVolumeFlip mirrors.

As in transforms.py, random transforms draw only from the generator Grain passes in, which is
seeded from the pipeline seed and the element's position: nothing else is stateful, so
augmentation is reproducible and the iterator state is checkpointable exactly as for 2D.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import grain
import numpy as np

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.data.transforms import (
    Record,
    Transform,
    as_text,
    to_model_element,
)
from radfm_jax.data.volume import Volume
from radfm_jax.data.volume_ops import crop_or_pad, resample

# Array axis of an (D, H, W, C) model-layout volume that runs along the patient's right -> left.
LEFT_RIGHT_AXIS = 2

# Windowed intensity below which a voxel counts as air (outside the body) for FitVolume.
BODY_THRESHOLD = 0.05


def _check_volume(volume: np.ndarray, key: str) -> None:
    if volume.ndim != 4:
        raise ValueError(f"{key!r} must be a (D, H, W, C) volume, got shape {volume.shape}.")


# --------------------------------------------------------------------------------------------
# Deterministic volume transforms.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodeVolume(grain.transforms.Map):
    """record "volume" uint8 (D, H, W, C) -> element "image" float32 in [0, 1] (the key the
    model's batch uses for 2D and 3D alike); the uint8 copy is dropped."""

    key: str = "volume"

    def map(self, element: Record) -> dict:
        out = dict(element)
        volume = np.asarray(out.pop(self.key))
        _check_volume(volume, self.key)
        if volume.dtype != np.uint8:
            raise ValueError(f"{self.key!r} must be uint8, got {volume.dtype}.")
        out["image"] = volume.astype(np.float32) * np.float32(1.0 / 255.0)
        return out


@dataclasses.dataclass(frozen=True)
class ResampleToSpacing(grain.transforms.Map):
    """Resamples "image" from the record's "spacing" (mm along D, H, W) to target_spacing.

    Linear (order 1) with volume_ops.resample's convention: each axis gets round(n * s / t)
    voxels, grid centres aligned, edge voxels repeated, Gaussian antialiasing on shrunk axes;
    for an integer zoom this is scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest").
    Records without "spacing" (ct_rate: fixed at build time) pass through unchanged. The
    element's "spacing" becomes target_spacing.
    """

    target_spacing: tuple[float, float, float]

    def map(self, element: Record) -> dict:
        if "spacing" not in element:
            return dict(element)
        image = element["image"]
        _check_volume(image, "image")
        spacing = np.asarray(element["spacing"], dtype=np.float64)
        target = np.asarray(self.target_spacing, dtype=np.float64)
        out = dict(element)
        out["spacing"] = target.astype(np.float32)
        if np.array_equal(spacing, target):
            return out
        # The Volume's affine is only a carrier of the spacing here: axes (i, j, k) = (D, H, W).
        affine = np.diag([*spacing, 1.0])
        channels = [resample(Volume(image[..., c], affine), target).values
                    for c in range(image.shape[-1])]
        out["image"] = np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32, copy=False)
        return out


def body_crop_starts(image: np.ndarray, size: Sequence[int],
                     threshold: float = BODY_THRESHOLD) -> tuple[int, ...]:
    """Per (D, H, W) axis longer than its target, the first voxel of a window of `size`
    centred on the bounding box of the body (voxels whose every channel exceeds `threshold`),
    kept inside the array; 0 for axes that are not cropped.

    Every channel, not any: in a lung window air is ~0.23, not 0, while soft-tissue and bone
    windows map it to 0. Without body voxels the window is centred on the array.
    """
    body = image.min(axis=-1) > threshold
    starts = []
    for axis, target in enumerate(size):
        n = image.shape[axis]
        if n <= target:
            starts.append(0)
            continue
        profile = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = (int(profile[0]), int(profile[-1]) + 1) if profile.size else (0, n)
        starts.append(min(max(0, (lo + hi - target) // 2), n - target))
    return tuple(starts)


@dataclasses.dataclass(frozen=True)
class FitVolume(grain.transforms.Map):
    """Crops / pads "image" (D, H, W, C) to size (D, H, W).

    An axis longer than the target is cropped to a window centred on the body (body_crop_starts),
    so an oversize scan (a whole-body CT in a chest recipe) keeps the body in view rather than
    the air of the array's centre; a shorter axis is padded with 0 (air) equally on both sides
    (the extra voxel at the end), as volume_ops.crop_or_pad.
    """

    size: tuple[int, int, int]
    threshold: float = BODY_THRESHOLD

    def map(self, element: Record) -> dict:
        image = element["image"]
        _check_volume(image, "image")
        if image.shape[:3] == tuple(self.size):  # prepared at the model's size: nothing to find
            return dict(element)
        starts = body_crop_starts(image, self.size, self.threshold)
        window = tuple(slice(s, s + min(n, t)) for s, n, t in zip(starts, image.shape, self.size))
        return {**element, "image": crop_or_pad(image[window], self.size, fill=0.0)}


# --------------------------------------------------------------------------------------------
# Augmentation.
# --------------------------------------------------------------------------------------------

_SIDE = re.compile(r"(?<![A-Za-z])(left|right)(?![A-Za-z])", re.IGNORECASE)


def _swap_side(match: re.Match) -> str:
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def swap_left_right(text: str) -> str:
    """"left" <-> "right" as whole words (snake_case parts too), keeping "left" / "Left" /
    "LEFT" case; words that merely contain them ("bright", "leftward") are kept."""
    return _SIDE.sub(_swap_side, text)


def mirrored_label_order(label_names: Sequence[str]) -> tuple[int, ...]:
    """order[i] = the label column that column i takes after a left-right flip: the column
    whose name has left / right swapped (e.g. left_pleural_effusion <-> right_...), else i."""
    names = list(label_names)
    order = []
    for i, name in enumerate(names):
        mirrored = swap_left_right(name)
        if mirrored == name:
            order.append(i)
        elif mirrored in names:
            order.append(names.index(mirrored))
        else:
            raise ValueError(f"label {name!r} is lateral but {mirrored!r} is not a label, so a "
                             "left-right flip cannot keep the labels true; drop the flip "
                             "(augment=False) or label both sides")
    return tuple(order)


@dataclasses.dataclass(frozen=True)
class RandomVolumeFlip(grain.transforms.RandomMap):
    """With probability p, mirrors "image" along the patient's left-right axis (LEFT_RIGHT_AXIS,
    W of (D, H, W, C)) and swaps left / right in the report and in the label columns whose
    names are lateral (label_names: the name of each column of "labels"; empty: labels kept),
    so image, text and labels still agree."""

    probability: float = 0.5
    label_names: tuple[str, ...] = ()
    _label_order: tuple[int, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        # Checked once when the pipeline is built, not on the first flipped element.
        object.__setattr__(self, "_label_order", mirrored_label_order(self.label_names))

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        if rng.random() >= self.probability:
            return dict(element)
        out = dict(element)
        image = element["image"]
        _check_volume(image, "image")
        out["image"] = np.ascontiguousarray(np.flip(image, axis=LEFT_RIGHT_AXIS))
        report = element["report"]
        flipped = swap_left_right(as_text(report))
        out["report"] = flipped.encode("utf-8") if isinstance(report, (bytes, np.bytes_)) else flipped
        if self._label_order != tuple(range(len(self._label_order))):
            labels = np.asarray(element["labels"])
            if labels.shape != (len(self._label_order),):
                raise ValueError(f"labels of shape {labels.shape} do not match the "
                                 f"{len(self._label_order)} label names.")
            out["labels"] = labels[list(self._label_order)]
        return out


def _resample_axis(image: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of `image` along `axis` at positions `coords` (one per output
    voxel of that axis); positions outside [0, n - 1] give 0 (scipy's mode="constant")."""
    n = image.shape[axis]
    inside = (coords >= 0) & (coords <= n - 1)
    low = np.clip(np.floor(coords), 0, max(n - 2, 0)).astype(np.intp)
    high = np.minimum(low + 1, n - 1)
    shape = [1] * image.ndim
    shape[axis] = coords.size
    weight = np.where(inside, coords - low, 0.0).astype(np.float32).reshape(shape)
    keep = inside.astype(np.float32).reshape(shape)
    below = np.take(image, low, axis=axis)
    return (below + weight * (np.take(image, high, axis=axis) - below)) * keep


@dataclasses.dataclass(frozen=True)
class RandomShiftScale(grain.transforms.RandomMap):
    """A random isotropic scale s ~ U(min_scale, max_scale) about the volume centre, then a
    shift t_a ~ U(-max_shift[a], max_shift[a]) voxels along each of (D, H, W): output voxel o
    samples input c + (o - c - t) / s, linearly; outside the input is 0 (air). The same as
    scipy.ndimage.affine_transform(order=1, mode="constant") with that diagonal matrix, done as
    one 1-D interpolation per axis (trilinear is separable), ~6x faster. One factor on every
    voxel axis is also isotropic in mm."""

    max_shift: tuple[float, float, float] = (2.0, 4.0, 4.0)
    min_scale: float = 0.9
    max_scale: float = 1.1

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        image = element["image"]
        _check_volume(image, "image")
        scale = rng.uniform(self.min_scale, self.max_scale)
        shift = np.array([rng.uniform(-m, m) for m in self.max_shift])
        out = np.asarray(image, dtype=np.float32)
        for axis in range(3):
            n = image.shape[axis]
            centre = (n - 1) / 2
            coords = centre + (np.arange(n) - centre - shift[axis]) / scale
            out = _resample_axis(out, axis, coords)
        return {**element, "image": out}


@dataclasses.dataclass(frozen=True)
class RandomIntensityJitter(grain.transforms.RandomMap):
    """Per channel c: x -> clip((x - m_c) * k_c + m_c + b_c, 0, 1), m_c the channel's mean,
    k_c ~ U(1 - contrast, 1 + contrast), b_c ~ U(-brightness, brightness) (per channel: each
    is a different CT window)."""

    brightness: float = 0.05
    contrast: float = 0.1

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        image = element["image"]
        _check_volume(image, "image")
        channels = image.shape[-1]
        k = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast, size=channels).astype(np.float32)
        b = rng.uniform(-self.brightness, self.brightness, size=channels).astype(np.float32)
        # Rows of (W * C) values first: a contiguous reduction, ~40x faster than over axes 0-2.
        rows = image.reshape(-1, image.shape[-2] * channels).mean(axis=0, dtype=np.float64)
        m = rows.reshape(-1, channels).mean(axis=0).astype(np.float32)
        out = image * k  # (x - m) k + m + b as one multiply-add, clipped in place
        out += m * (1.0 - k) + b
        np.clip(out, 0.0, 1.0, out=out)
        return {**element, "image": out}


# --------------------------------------------------------------------------------------------
# The lists the pipeline applies.
# --------------------------------------------------------------------------------------------


def _geometry(size: tuple[int, int, int],
              target_spacing: tuple[float, float, float] | None) -> list[Transform]:
    ops: list[Transform] = [DecodeVolume()]
    if target_spacing is not None:
        ops.append(ResampleToSpacing(target_spacing=tuple(float(s) for s in target_spacing)))
    return [*ops, FitVolume(size=tuple(int(n) for n in size))]


def volume_train_transforms(
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    size: tuple[int, int, int],
    label_names: Sequence[str] = (),
    target_spacing: tuple[float, float, float] | None = None,
) -> list[Transform]:
    """Volume record -> model element, with augmentation when data_cfg.augment.

    size: the model's (D, H, W) (volume_input_shape); label_names: the name of each column of
    "labels" (lateral ones are swapped by the flip); target_spacing: resample records that
    carry a "spacing" to it (mm along D, H, W) first, or None to leave voxels as stored.
    """
    ops = _geometry(size, target_spacing)
    if data_cfg.augment:
        ops += [
            RandomVolumeFlip(label_names=tuple(label_names)),
            # Shifts of 1/16 of each axis: the same fraction of the field of view on every axis.
            RandomShiftScale(max_shift=tuple(n / 16 for n in size)),
            RandomIntensityJitter(),
        ]
    return to_model_element(ops, tokenizer, data_cfg, train=True)


def volume_eval_transforms(
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    size: tuple[int, int, int],
    target_spacing: tuple[float, float, float] | None = None,
) -> list[Transform]:
    """Volume record -> model element, deterministic (no augmentation)."""
    return to_model_element(_geometry(size, target_spacing), tokenizer, data_cfg, train=False)
