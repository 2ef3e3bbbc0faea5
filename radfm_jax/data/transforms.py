"""Typed Grain transforms from prepared records to model inputs.

A prepared chest X-ray record (see data/builders) holds ``image`` uint8 (S, S, 1), ``report``
utf-8 bytes, ``labels`` int8 (7,) CheXpert values, and metadata (patient_id, study_id, view, sex,
age). The transforms below turn it into the model batch element

    {"image": float32 (H, W, 1), "tokens": int32 (L,), "labels": int8 (7,)}

Every transform is a small dataclass with explicit fields (no string specs). Deterministic ones
subclass ``grain.transforms.Map``; random ones subclass ``grain.transforms.RandomMap`` and draw
only from the ``np.random.Generator`` Grain passes in, which Grain seeds from the pipeline seed and
the element's index, so augmentation is reproducible.

Image intensities: uint8 -> x / 255 in [0, 1] -> (x - IMAGE_MEAN) / IMAGE_STD. The constants
are fixed (not data-set statistics) so a checkpoint's expected input never depends on which data
it was trained on: IMAGE_MEAN = 0.5, IMAGE_STD = 0.25 map [0, 1] to [-2, 2].

There is deliberately NO horizontal flip: laterality matters in radiology (reports say "left
pleural effusion", the heart lies on the left), so a flipped image would contradict its report.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.tokenizer import Tokenizer, normalize_whitespace

IMAGE_MEAN = 0.5
IMAGE_STD = 0.25

Record = Mapping[str, Any]


def as_text(value: Any) -> str:
    """A text feature (bytes, numpy bytes / 0-d array, or str) as str."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def report_text(record: Record) -> str:
    """The report of a record as one line of text (the tokenizer's training sentence)."""
    return normalize_whitespace(as_text(record["report"]))


# --------------------------------------------------------------------------------------------
# Resampling: separable linear interpolation as two small matrix products (fast in NumPy).
# --------------------------------------------------------------------------------------------


def _linear_weights(
    in_size: int, out_size: int, start: float = 0.0, length: float | None = None
) -> np.ndarray:
    """(out_size, in_size) float32 weights sampling the window [start, start + length) of an axis.

    Pixel centres follow the half-pixel convention (as jax.image.resize). Linear (triangle)
    kernel, widened by the scale factor when shrinking (antialiasing, as jax.image.resize with
    antialias=True); weights are renormalised over in-bounds pixels at the borders.
    """
    length = float(in_size if length is None else length)
    scale = length / out_size  # input pixels per output pixel
    support = max(scale, 1.0)
    centres = start + (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    if scale <= 1.0:
        # Enlarging: two taps per output pixel; clamping an out-of-range tap onto the border
        # pixel equals renormalising over in-bounds pixels. ~5x faster than the dense form.
        lo = np.floor(centres)
        frac = (centres - lo).astype(np.float32)
        lo = lo.astype(np.int64)
        rows = np.arange(out_size)
        w = np.zeros((out_size, in_size), dtype=np.float32)
        w[rows, np.clip(lo, 0, in_size - 1)] = 1.0 - frac
        w[rows, np.clip(lo + 1, 0, in_size - 1)] += frac
        return w
    dist = (np.arange(in_size, dtype=np.float64)[None, :] - centres[:, None]) / support
    w = np.maximum(0.0, 1.0 - np.abs(dist))
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total > 0, total, 1.0)
    return w.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _cached_weights(in_size: int, out_size: int) -> np.ndarray:
    w = _linear_weights(in_size, out_size)
    w.setflags(write=False)
    return w


def _resample(image: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """image (H, W, C) float32 -> (wy.shape[0], wx.shape[0], C)."""
    if image.shape[-1] == 1:
        return (wy @ image[..., 0] @ wx.T)[..., None]
    return np.einsum("oh,hwc,pw->opc", wy, image, wx)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Linear, antialiased resize of (H, W, C) float32 to (size, size, C); no-op when equal."""
    h, w = image.shape[:2]
    if h == size and w == size:
        return image
    return _resample(image, _cached_weights(h, size), _cached_weights(w, size)).astype(
        np.float32, copy=False
    )


# --------------------------------------------------------------------------------------------
# Image transforms.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecodeImage(grain.transforms.Map):
    """uint8 (H, W, C) -> float32 in [0, 1]."""

    key: str = "image"

    def map(self, element: Record) -> dict:
        if self.key not in element and "volume" in element:
            # A volumetric data set read with the 2D transforms: say where that is decided.
            raise ValueError(f"the record holds a 'volume', not an {self.key!r}: list its data set in "
                             "model_inputs.VOLUME_DATASETS so the pipeline reads it as a volume.")
        out = dict(element)
        image = np.asarray(element[self.key])
        if image.ndim == 2:
            image = image[..., None]
        if image.dtype != np.uint8:
            raise ValueError(f"{self.key!r} must be uint8, got {image.dtype}.")
        out[self.key] = image.astype(np.float32) * np.float32(1.0 / 255.0)
        return out


@dataclasses.dataclass(frozen=True)
class ResizeImage(grain.transforms.Map):
    """Resizes a float image to (size, size); skipped when already that size."""

    size: int
    key: str = "image"

    def map(self, element: Record) -> dict:
        out = dict(element)
        out[self.key] = resize_image(element[self.key], self.size)
        return out


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(grain.transforms.RandomMap):
    """Crops a random square window and resizes it to (size, size).

    The window's side is a fraction U(min_scale, 1) of the image side (aspect ratio kept: a
    stretched chest would change the cardiothoracic ratio that defines cardiomegaly) and it is
    placed uniformly inside the image, so the largest shift is (1 - min_scale) of the side.
    Sub-pixel window positions are sampled with linear interpolation. No rotation, no flip.
    """

    size: int
    min_scale: float = 0.85
    key: str = "image"

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        out = dict(element)
        image = element[self.key]
        h, w = image.shape[:2]
        out[self.key] = random_crop_resize(image, rng, self.min_scale, 1.0, self.size)
        return out


def random_crop_resize(image: np.ndarray, rng: np.random.Generator, min_scale: float, max_scale: float,
                       size: int) -> np.ndarray:
    """A square window of (H, W, C) `image`, its side a fraction U(min_scale, max_scale) of the
    image side, placed uniformly inside it, resized to (size, size, C) (linear, antialiased)."""
    h, w = image.shape[:2]
    s = rng.uniform(min_scale, max_scale)
    ch, cw = s * h, s * w
    y0 = rng.uniform(0.0, h - ch)
    x0 = rng.uniform(0.0, w - cw)
    wy = _linear_weights(h, size, y0, ch)
    wx = _linear_weights(w, size, x0, cw)
    return _resample(image, wy, wx).astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True)
class RandomBrightnessContrast(grain.transforms.RandomMap):
    """x -> clip((x - m) * c + m + b, 0, 1) on [0, 1] images, m the image mean.

    c ~ U(1 - contrast, 1 + contrast), b ~ U(-brightness, brightness).
    """

    brightness: float = 0.05
    contrast: float = 0.1
    key: str = "image"

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        out = dict(element)
        image = element[self.key]
        c = np.float32(rng.uniform(1.0 - self.contrast, 1.0 + self.contrast))
        b = np.float32(rng.uniform(-self.brightness, self.brightness))
        m = np.float32(image.mean())
        out[self.key] = np.clip((image - m) * c + (m + b), 0.0, 1.0).astype(np.float32)
        return out


@dataclasses.dataclass(frozen=True)
class NormalizeImage(grain.transforms.Map):
    """[0, 1] -> (x - mean) / std with the fixed constants IMAGE_MEAN / IMAGE_STD."""

    mean: float = IMAGE_MEAN
    std: float = IMAGE_STD
    key: str = "image"

    def map(self, element: Record) -> dict:
        out = dict(element)
        out[self.key] = ((element[self.key] - np.float32(self.mean)) / np.float32(self.std)).astype(
            np.float32, copy=False
        )
        return out


# --------------------------------------------------------------------------------------------
# Text and output.
# --------------------------------------------------------------------------------------------


_SECTION_HEADER = re.compile(r"\b[A-Z][A-Z ]+:\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def report_sentences(text: str) -> list[str]:
    """The sentences of a report with section headers ("FINDINGS:", "IMPRESSION:") removed."""
    body = _SECTION_HEADER.sub(" ", normalize_whitespace(text))
    return [s for s in _SENTENCE_END.split(body.strip()) if s]


@dataclasses.dataclass(frozen=True)
class SampleReportSentences(grain.transforms.RandomMap):
    """With probability `probability`, replace the report by a random non-empty subset of its
    sentences, in their original order (a text augmentation: single-sentence zero-shot prompts
    then resemble texts the text tower has seen)."""

    probability: float

    def random_map(self, element: Record, rng: np.random.Generator) -> dict:
        if rng.random() >= self.probability:
            return dict(element)
        sentences = report_sentences(report_text(element))
        if not sentences:
            return dict(element)
        count = int(rng.integers(1, len(sentences) + 1))
        keep = np.sort(rng.choice(len(sentences), size=count, replace=False))
        return {**element, "report": " ".join(sentences[i] for i in keep)}


@dataclasses.dataclass(frozen=True)
class TokenizeReport(grain.transforms.Map):
    """report bytes -> "tokens" int32 (max_len,): ids, EOS, right padding with 0."""

    tokenizer: Tokenizer
    max_len: int
    key: str = "report"

    def map(self, element: Record) -> dict:
        out = dict(element)
        out["tokens"] = self.tokenizer.encode_batch([report_text(element)], self.max_len)[0]
        return out


@dataclasses.dataclass(frozen=True)
class ModelInputs(grain.transforms.Map):
    """Keeps exactly the model's keys with their dtypes: image float32 (H, W, C) or, for volumes,
    (D, H, W, C), tokens int32, labels int8."""

    def map(self, element: Record) -> dict:
        labels = np.asarray(element["labels"], dtype=np.int8)
        if labels.ndim != 1:
            raise ValueError(f"labels must be a vector (one value per finding), got shape {labels.shape}.")
        image = np.asarray(element["image"], dtype=np.float32)
        if image.ndim not in (3, 4):
            raise ValueError(f"image must be (H, W, C) or, for a volume, (D, H, W, C), got shape {image.shape}.")
        return {
            "image": image,
            "tokens": np.asarray(element["tokens"], dtype=np.int32),
            "labels": labels,
        }


Transform = grain.transforms.Map | grain.transforms.RandomMap


def to_model_element(image_ops: Sequence[Transform], tokenizer: Tokenizer, data_cfg: DataConfig, *,
                     train: bool) -> list[Transform]:
    """`image_ops` (decode, geometry, augmentation: 2D or volume), then what every model element
    gets: normalisation, report sentence sampling (training only), tokens and the model's keys."""
    text_ops: list[Transform] = []
    if train and data_cfg.report_sentence_sampling > 0:
        text_ops.append(SampleReportSentences(probability=data_cfg.report_sentence_sampling))
    return [
        *image_ops,
        NormalizeImage(),
        *text_ops,
        TokenizeReport(tokenizer=tokenizer, max_len=data_cfg.max_text_len),
        ModelInputs(),
    ]


def train_transforms(tokenizer: Tokenizer, data_cfg: DataConfig) -> list[Transform]:
    """Record -> model element, with augmentation when data_cfg.augment."""
    image_ops: list[Transform] = [DecodeImage()]
    if data_cfg.augment:
        image_ops += [RandomResizedCrop(size=data_cfg.input_size), RandomBrightnessContrast()]
    else:
        image_ops += [ResizeImage(size=data_cfg.input_size)]
    return to_model_element(image_ops, tokenizer, data_cfg, train=True)


def eval_transforms(tokenizer: Tokenizer, data_cfg: DataConfig) -> list[Transform]:
    """Record -> model element, deterministic (no augmentation)."""
    return to_model_element([DecodeImage(), ResizeImage(size=data_cfg.input_size)], tokenizer, data_cfg,
                            train=False)


def apply_transforms(element: Record, transforms: Sequence[Transform], rng=None) -> dict:
    """Applies transforms outside Grain (tests, notebooks); random ones need ``rng``."""
    for t in transforms:
        if isinstance(t, grain.transforms.RandomMap):
            if rng is None:
                raise ValueError(f"{type(t).__name__} is random: pass an np.random.Generator.")
            element = t.random_map(element, rng)
        else:
            element = t.map(element)
    return element
