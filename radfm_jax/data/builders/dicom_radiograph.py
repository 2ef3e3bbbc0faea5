"""What builders whose images are DICOM radiographs share (rsna_pneumonia, siim_acr_pneumothorax):
the few header fields a plan needs, read ahead of the build without the pixels; the image as a
display-ready record; and the options of a data set without an official split (a seeded,
patient-level train / val / test split).

Only non-identifying fields (view, sex, age) reach a record. The DICOM PatientID and
StudyInstanceUID are read to key the split and are stored only as salted pseudonyms.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from radfm_jax.data.builders.common import FractionSplitConfig, ManualBuilder, PlannedExample
from radfm_jax.data.builders.skips import MISSING_FILE, UNREADABLE_IMAGE, SkipLog
from radfm_jax.data.builders.table_fields import parse_sex
from radfm_jax.data.dicom import DicomReadError, read_dicom, to_display
from radfm_jax.data.image_files import ImageReadError
from radfm_jax.data.preprocessing import PreprocessSpec

# The header fields a plan reads (stop_before_pixels: the pixel data is not decoded here).
HEADER_TAGS = ("PatientID", "StudyInstanceUID", "ViewPosition", "PatientSex", "PatientAge")
_AGE = re.compile(r"^(\d{1,3})\s*([DWMY]?)$")
_MAX_AGE = 120
_NO_SUCH_FILE = "no such file"  # the ImageReadError reason ManualBuilder counts as missing_file


@dataclasses.dataclass(frozen=True)
class DicomHeader:
    """The header fields a record or a split needs. patient_id and study_uid are raw
    identifiers: pseudonymise them before they go anywhere."""

    patient_id: str
    study_uid: str
    view: str  # ViewPosition upper-cased ("PA", "AP", ...), "" when absent
    sex: str  # "M" / "F" / ""
    age: int  # years, -1 when absent or implausible


def parse_dicom_age(value: Any) -> int:
    """PatientAge in years: DICOM's "051Y" (days, weeks and months count as 0 years) or the
    bare "51" some releases (RSNA's Kaggle images) write; -1 when absent or implausible."""
    match = _AGE.match(str(value or "").strip().upper())
    if match is None:
        return -1
    number, unit = int(match.group(1)), match.group(2) or "Y"
    years = number if unit == "Y" else 0
    return years if 0 <= years <= _MAX_AGE else -1


def read_header(path: str | os.PathLike) -> DicomHeader:
    """The plan's header fields of one file; ImageReadError (reason "no such file" for a
    missing one) when it cannot be read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except FileNotFoundError:
        raise ImageReadError(path, _NO_SUCH_FILE) from None
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no 'DICM' marker after the preamble)") from None
    except Exception as error:  # pydicom raises many types on damaged element streams
        raise ImageReadError(path, f"damaged or truncated DICOM header ({type(error).__name__}: "
                                   f"{error})") from None
    if len(ds) == 0:
        raise ImageReadError(path, f"none of {', '.join(HEADER_TAGS)} could be read: the file is "
                                   "truncated or not a radiograph")

    def text(keyword: str) -> str:
        # The stored bytes, not pydicom's converted value: converting validates the value, and
        # releases that write the age as "51" (not "051Y") would log a warning per file.
        element = ds.get_item(keyword)
        value = element.value if element is not None else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        return str(value or "").strip(" \x00\t\r\n")

    return DicomHeader(patient_id=text("PatientID"), study_uid=text("StudyInstanceUID"),
                       view=text("ViewPosition").upper(), sex=parse_sex(text("PatientSex")),
                       age=parse_dicom_age(text("PatientAge")))


def read_headers(paths: Sequence[Path], workers: int | None = None) -> list[DicomHeader | ImageReadError]:
    """read_header over many files in threads (header parsing is I/O bound), in order."""
    def attempt(path: Path) -> DicomHeader | ImageReadError:
        try:
            return read_header(path)
        except ImageReadError as err:
            return err

    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(attempt, paths, chunksize=64))


def skip_unreadable(skips: SkipLog, err: ImageReadError, source_path: str) -> None:
    """Count and log a file whose header could not be read: missing_file or unreadable_image."""
    skips.skip(MISSING_FILE if err.reason == _NO_SUCH_FILE else UNREADABLE_IMAGE, source_path, err.reason)


def load_radiograph(path: str | os.PathLike, spec: PreprocessSpec) -> np.ndarray:
    """A DICOM radiograph as the record's uint8 (S, S, 1) image: the header's VOI LUT / window
    (else min-max), MONOCHROME1 inverted, then the spec's resize. ImageReadError for a file that
    is missing, truncated, not DICOM, colour, multi-frame or needs a decoder not installed."""
    try:
        image = read_dicom(path)
    except DicomReadError as err:
        reason = err.reason if Path(path).is_file() else _NO_SUCH_FILE
        raise ImageReadError(path, reason) from None
    if image.values.ndim != 2:
        raise ImageReadError(path, f"{image.values.shape[0]} frames; a radiograph has one")
    return spec.apply_image(to_display(image))


@dataclasses.dataclass(eq=False)
class SeededSplitConfig(FractionSplitConfig):
    """FractionSplitConfig of data sets without reports or uncertain labels: text_target and
    uncertain_policy change nothing, so they are not in the name."""

    def _name_parts(self) -> list[str]:
        return [p for p in super()._name_parts() if not p.startswith(("text-", "u-"))]

    def split_convention(self, key: str) -> str:
        """What the build records in its metadata as `split_convention`."""
        shares = " / ".join(f"{split} {share:g}" for split, share in self.fractions().items())
        return f"seeded_patient_split by {key}: {shares}, seed {self.split_seed} (no official test labels)"


class DicomRadiographBuilder(ManualBuilder):
    """A ManualBuilder whose images are DICOM files (one frame each)."""

    def _load(self, example: PlannedExample) -> dict[str, Any]:
        return {"image": load_radiograph(example.image_path, self.builder_config.spec)}
