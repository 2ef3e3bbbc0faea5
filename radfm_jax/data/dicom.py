"""Read DICOM files into arrays in modality units (Hounsfield units for CT), display them in
[0, 1] the way a radiology viewer would, and stack a CT/MR series into a `Volume`.

Only what pixels need leaves a reader: `DicomImage` carries values, geometry and the display
settings (window, VOI LUT table), never the pydicom dataset, so no patient identifier travels
with an image (see `privacy.safe_header` for metadata).

Pipeline per PS3.3 C.11 / PS3.4 N.2: stored values (decoded by pydicom, which applies Bits
Stored and Pixel Representation) -> modality LUT (Rescale Slope/Intercept or a Modality LUT
Sequence, by pydicom's `apply_modality_lut`) -> `DicomImage.values`; then for display the VOI
transform (a VOI LUT Sequence, else the header window, else min-max) and, for MONOCHROME1, an
inversion so that higher is always brighter.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_voi
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from radfm_jax.data.volume import Volume
from radfm_jax.data.windows import VOI_FUNCTIONS, WindowSpec, apply_window, resolve_window
from radfm_jax.errors import ConfigError

PathLike = str | os.PathLike

# Which pip packages give pydicom a decoder for each family of compressed transfer syntaxes.
_PLUGIN_PACKAGES = (
    (JPEG2000TransferSyntaxes, "pylibjpeg pylibjpeg-openjpeg"),
    (JPEGLSTransferSyntaxes, "pylibjpeg pylibjpeg-libjpeg"),
    (JPEGTransferSyntaxes, "pylibjpeg pylibjpeg-libjpeg"),
)
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")


class DicomReadError(ConfigError):
    """A file that cannot be read as a DICOM image; the message names the file and the reason."""

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VoiLut:
    """A VOI LUT Sequence item as a table: input values first_input .. first_input + len - 1
    map to table entries; inputs outside clamp to the first / last entry (PS3.3 C.11.2.1.1)."""

    first_input: int
    table: np.ndarray
    bits: int  # bits per entry: the output range is 0 .. 2**bits - 1

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """values -> float32 in [0, 1]."""
        index = np.clip(values - self.first_input, 0, len(self.table) - 1).astype(np.intp)
        return (self.table[index] / np.float32(2**self.bits - 1)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class DicomImage:
    """A decoded grayscale DICOM image without its header.

    values: float32 in modality units (HU for CT), (H, W) or (frames, H, W) for multi-frame.
    window: the header's first Window Center / Width pair, or None. voi_function: its VOI LUT
    Function. voi_lut: the first VOI LUT Sequence item, or None (preferred over window, as
    pydicom's `apply_voi_lut` does). pixel_spacing: (row, column) mm from Pixel Spacing, else
    Imager Pixel Spacing (projection radiographs), or None. image_position / image_orientation:
    Image Position / Orientation (Patient) in LPS mm, or None for projection images.
    """

    values: np.ndarray
    modality: str
    photometric: str
    window: tuple[float, float] | None
    voi_function: str
    voi_lut: VoiLut | None
    pixel_spacing: tuple[float, float] | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None


def read_dicom(path: PathLike, *, frames: int | Sequence[int] | None = None) -> DicomImage:
    """Read a grayscale DICOM image (any transfer syntax pydicom's plugins decode).

    frames: None reads every frame ((H, W) for single-frame files, (frames, H, W) otherwise);
    an int reads that frame as (H, W); a sequence reads those frames as (n, H, W).
    """
    return _image_from_dataset(_read_dataset(path), path, frames)


def to_display(
    source: PathLike | DicomImage, window: WindowSpec | None = None
) -> np.ndarray:
    """An image as float32 in [0, 1] where higher is brighter on a standard display.

    window=None uses the header: the VOI LUT Sequence, else Window Center / Width (with its
    VOI LUT Function), else the min-max of the image's values. A preset name or (center, width)
    applies that DICOM linear window instead. MONOCHROME1 images are inverted afterwards.
    """
    image = source if isinstance(source, DicomImage) else read_dicom(source)
    if window is not None:
        shown = apply_window(image.values, *resolve_window(window))
    elif image.voi_lut is not None:
        shown = image.voi_lut(image.values)
    elif image.window is not None:
        shown = apply_window(image.values, *image.window, function=image.voi_function)
    else:
        shown = _min_max(image.values)
    if image.photometric == "MONOCHROME1":  # stored as "higher = darker"
        shown = np.float32(1) - shown
    return shown


def read_series(
    source: PathLike | Iterable[PathLike], *, spacing_tolerance: float = 0.01
) -> Volume:
    """The slices of one CT/MR series (a directory holding only that series, or its files) as a
    `Volume` in modality units with a RAS affine.

    Slices are ordered by their position along the slice normal (not instance number or file
    name); the slice step comes from the positions, and gaps differing from the mean by more
    than `spacing_tolerance` (a fraction of the mean gap) are an error (missing slices or a
    mixed series). values[i, j, k] is column i, row j of the k-th slice.
    """
    paths = _series_paths(source)
    if len(paths) < 2:
        raise ConfigError(
            f"a series volume needs at least 2 slices, got {len(paths)} from {source}; "
            "read a single image with read_dicom"
        )
    images, series_uids = [], []
    for path in paths:
        ds = _read_dataset(path)
        image = _image_from_dataset(ds, path, frames=None)
        if image.values.ndim != 2:
            raise DicomReadError(path, "a multi-frame image in a series; read it with read_dicom")
        if image.image_position is None or image.image_orientation is None:
            raise DicomReadError(
                path, "no Image Position / Orientation (Patient): not a slice of a 3D series"
            )
        if image.pixel_spacing is None:
            raise DicomReadError(path, "no Pixel Spacing: cannot place the slice in space")
        images.append(image)
        series_uids.append(ds.get("SeriesInstanceUID"))
    first = images[0]
    for path, image, uid in zip(paths[1:], images[1:], series_uids[1:]):
        mismatch = _series_mismatch(first, image, series_uids[0] == uid)
        if mismatch:  # UIDs are identifiers: name the files, never the UID values
            raise ConfigError(
                f"{paths[0]} and {path} are not slices of one series: {mismatch}; "
                "pass the files of a single series"
            )

    row_cosine = np.asarray(first.image_orientation[:3])
    column_cosine = np.asarray(first.image_orientation[3:])
    positions = np.asarray([image.image_position for image in images])
    depths = positions @ np.cross(row_cosine, column_cosine)
    order = np.argsort(depths, kind="stable")
    _check_gaps(depths[order], [paths[i] for i in order], spacing_tolerance)

    row_spacing, column_spacing = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_cosine * column_spacing  # i steps along a row, i.e. across columns
    lps[:3, 1] = column_cosine * row_spacing
    # From the positions themselves, so a gantry tilt gives the right (sheared) affine.
    lps[:3, 2] = (positions[order[-1]] - positions[order[0]]) / (len(paths) - 1)
    lps[:3, 3] = positions[order[0]]
    values = np.stack([images[i].values.T for i in order], axis=-1)
    return Volume(values=values, affine=np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps)


# --------------------------------------------------------------------------------------------
# Reading and decoding
# --------------------------------------------------------------------------------------------


def _read_dataset(path: PathLike) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DicomReadError(
            path,
            "not a DICOM file: no 'DICM' marker after the 128-byte preamble (a header-less "
            "ACR-NEMA file must first be converted, e.g. with dcmtk's dcmconv or gdcmconv)",
        ) from None
    except OSError as error:
        raise DicomReadError(path, f"cannot read the file ({error.strerror or error})") from None
    except Exception as error:  # pydicom raises many types on damaged element streams
        raise DicomReadError(
            path, f"damaged or truncated DICOM ({type(error).__name__}: {error})"
        ) from error
    if len(ds) == 0:  # pydicom stops at an early end of file with a warning and no elements
        raise DicomReadError(path, "no DICOM elements could be read: the file is truncated")
    return ds


def _image_from_dataset(
    ds: pydicom.Dataset, path: PathLike, frames: int | Sequence[int] | None
) -> DicomImage:
    if "PixelData" not in ds:
        kind = ds.get("SOPClassUID")
        raise DicomReadError(
            path,
            f"no pixel data ({kind.name if kind else 'unknown'} object): not an image, or the "
            "file was truncated before its pixel data",
        )
    syntax = getattr(ds, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    if syntax is None:
        raise DicomReadError(
            path, "no Transfer Syntax UID in the file meta information, so the pixel data "
            "cannot be interpreted (header-less or damaged file)"
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in GRAYSCALE:
        raise DicomReadError(
            path, f"photometric interpretation {photometric!r} is not supported; only "
            f"grayscale ({' / '.join(GRAYSCALE)}) images are read"
        )
    stored = _decode_pixels(ds, syntax, path, frames)
    for keyword in ("RescaleSlope", "RescaleIntercept"):  # pydicom keeps malformed numbers as text
        _number(ds, keyword, float, path)
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    voi_function = str(ds.get("VOILUTFunction") or "LINEAR")
    return DicomImage(
        values=values,
        modality=str(ds.get("Modality", "")),
        photometric=photometric,
        window=_header_window(ds, path),
        voi_function=voi_function if voi_function in VOI_FUNCTIONS else "LINEAR",
        voi_lut=_voi_lut(ds, path),
        pixel_spacing=_pixel_spacing(ds, path),
        image_position=_floats(ds, "ImagePositionPatient", 3, path),
        image_orientation=_floats(ds, "ImageOrientationPatient", 6, path),
    )


def _decode_pixels(
    ds: pydicom.Dataset,
    syntax: pydicom.uid.UID,
    path: PathLike,
    frames: int | Sequence[int] | None,
) -> np.ndarray:
    if syntax.is_compressed:
        _require_decoder(syntax, path)
    n_frames = _number(ds, "NumberOfFrames", int, path) or 1
    if frames is not None and not isinstance(frames, int) and len(frames) == 0:
        raise ConfigError(f"{path}: frames is an empty sequence; pass None to read every frame")
    for index in [frames] if isinstance(frames, int) else frames or ():
        if not 0 <= index < n_frames:
            raise ConfigError(f"{path}: frame {index} out of range; the file has {n_frames}")
    try:
        if frames is None:
            return pixel_array(ds)
        if isinstance(frames, int):
            return pixel_array(ds, index=frames)
        return np.stack([pixel_array(ds, index=index) for index in frames])
    except Exception as error:  # decoders raise ValueError, RuntimeError, their own types
        cause = "truncated or damaged"
        if syntax.is_compressed:
            cause += ", or needs a decoder plugin that is not installed (e.g. python-gdcm)"
        raise DicomReadError(
            path, f"{syntax.name} pixel data could not be decoded: the file is {cause} "
            f"({type(error).__name__}: {error})"
        ) from error


def _require_decoder(syntax: pydicom.uid.UID, path: PathLike) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomReadError(
            path, f"transfer syntax {syntax.name} ({syntax}) has no pydicom decoder; "
            "transcode the file to an uncompressed syntax (e.g. `gdcmconv --raw`)"
        ) from None
    if not decoder.is_available:
        packages = next((pip for family, pip in _PLUGIN_PACKAGES if syntax in family), None)
        install = f"pip install {packages}" if packages else "install one of its plugins"
        raise DicomReadError(
            path, f"no installed plugin decodes {syntax.name} ({syntax}) pixel data; {install} "
            f"(pydicom lists: {'; '.join(decoder.missing_dependencies)})"
        )


# --------------------------------------------------------------------------------------------
# Header fields an image keeps
# --------------------------------------------------------------------------------------------


def _first(value):
    return value[0] if isinstance(value, MultiValue) else value


def _number(ds: pydicom.Dataset, keyword: str, convert: Callable[[Any], Any], path: PathLike) -> Any:
    """convert(the field's value), None when absent or empty; a value that does not convert (pydicom
    keeps malformed IS / DS / US values as they were written) is a DicomReadError naming it."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return convert(value)
    except (TypeError, ValueError, IndexError) as error:
        raise DicomReadError(
            path, f"header field {keyword} holds {str(value)!r}, which is not a valid number here "
            f"({error}); correct or remove the field (e.g. with pydicom or dcmodify)"
        ) from None


def _header_window(ds: pydicom.Dataset, path: PathLike) -> tuple[float, float] | None:
    center = _number(ds, "WindowCenter", lambda v: float(_first(v)), path)
    width = _number(ds, "WindowWidth", lambda v: float(_first(v)), path)
    if center is None or width is None:
        return None
    # A width under 1 violates PS3.3 C.11.2.1.2; treat it as absent rather than fail.
    return (center, width) if width >= 1 else None


def _voi_lut(ds: pydicom.Dataset, path: PathLike) -> VoiLut | None:
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    descriptor = _number(sequence[0], "LUTDescriptor", lambda v: tuple(int(x) for x in v), path)
    if descriptor is None or len(descriptor) != 3:
        raise DicomReadError(path, "VOI LUT Sequence item without a three-value LUT Descriptor; "
                                   "remove the sequence to use the header window")
    entries, first_input, bits = descriptor
    entries = entries or 2**16  # PS3.3 C.11.1.1: 0 means 65536 entries
    # pydicom parses the LUT data (US or OW of either endianness); feed it every input once.
    table = apply_voi(np.arange(first_input, first_input + entries), ds)
    return VoiLut(first_input=first_input, table=np.asarray(table), bits=bits)


def _pixel_spacing(ds: pydicom.Dataset, path: PathLike) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _floats(ds, keyword, 2, path)
        if spacing is not None and min(spacing) > 0:  # some writers store 0\0 for "unknown"
            return spacing
    return None


def _floats(ds: pydicom.Dataset, keyword: str, count: int, path: PathLike) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    if value is None or not isinstance(value, MultiValue) or len(value) != count:
        return None
    return _number(ds, keyword, lambda v: tuple(float(x) for x in v), path)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = np.min(values), np.max(values)
    if high == low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Series checks
# --------------------------------------------------------------------------------------------


def _series_paths(source: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a directory; pass a series folder or its files")
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [Path(p) for p in source]


def _series_mismatch(first: DicomImage, other: DicomImage, same_uid: bool) -> str:
    if not same_uid:
        return "different SeriesInstanceUID"
    if first.values.shape != other.values.shape:
        return f"Rows x Columns {first.values.shape} vs {other.values.shape}"
    if not np.allclose(first.image_orientation, other.image_orientation, atol=1e-4):
        return (
            f"ImageOrientationPatient {first.image_orientation} vs {other.image_orientation}"
        )
    if not np.allclose(first.pixel_spacing, other.pixel_spacing, rtol=1e-4):
        return f"PixelSpacing {first.pixel_spacing} vs {other.pixel_spacing}"
    return ""


def _check_gaps(depths: np.ndarray, paths: list[Path], tolerance: float) -> None:
    gaps = np.diff(depths)
    duplicate = np.flatnonzero(gaps < 1e-3)  # mm
    if duplicate.size:
        i = duplicate[0]
        raise ConfigError(
            f"{paths[i]} and {paths[i + 1]} lie at the same slice position; the folder holds "
            "duplicates or more than one acquisition of the series"
        )
    mean_gap = (depths[-1] - depths[0]) / len(gaps)
    worst = int(np.argmax(np.abs(gaps - mean_gap)))
    if abs(gaps[worst] - mean_gap) > tolerance * mean_gap:
        raise ConfigError(
            f"uneven slice spacing: {gaps[worst]:.4g} mm between {paths[worst]} and "
            f"{paths[worst + 1]}, mean {mean_gap:.4g} mm (gaps {gaps.min():.4g}..{gaps.max():.4g}"
            f" mm); slices are missing or the series is mixed; resample it, or raise "
            f"spacing_tolerance (now {tolerance}) if the unevenness is acceptable"
        )
