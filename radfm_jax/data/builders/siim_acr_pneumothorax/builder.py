"""SIIM-ACR Pneumothorax Segmentation (Kaggle, 2019) from the user's copy: chest radiographs
(DICOM) with one label, `pneumothorax` = 1 when the image has at least one mask in the RLE table
(`EncodedPixels` other than "-1"), else 0. The masks themselves are not stored, and there are no
reports (`report` is empty). View, sex and age come from each file's DICOM header.

Splits: the labels of the challenge's final (stage 2) test images were never released, so every
image the table labels is split by a hash of (split_seed, DICOM PatientID) into train / val /
test (default 70 / 15 / 15 %); the PatientID is the release's (de-identified) patient key. With
stage 2's stage_2_train.csv, the stage 1 test images (dicom-images-test/) are labelled too.

No raw id reaches a record: the folders and file names are the StudyInstanceUID,
SeriesInstanceUID and ImageId (SOPInstanceUID), so source_path keeps only the images folder,
"dicom-images-train/<16 hex>/<16 hex>/<16 hex>.dcm" (each UID replaced by its pseudonym;
pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    PlannedExample,
    planned_radiograph,
)
from radfm_jax.data.builders.dicom_radiograph import (
    DicomRadiographBuilder,
    SeededSplitConfig,
    read_headers,
    skip_unreadable,
)
from radfm_jax.data.builders.manual_folder import require_files
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import MISSING_FILE, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.image_files import ImageReadError
from radfm_jax.errors import ConfigError

SIIM_FINDINGS: tuple[str, ...] = ("pneumothorax",)
# The stage 1 table (train-rle.csv) or stage 2's (stage_2_train.csv, which also labels the
# stage 1 test images); the DICOM files may sit in any of these folders, at any depth.
RLE_CSVS = ("train-rle.csv", "stage_2_train.csv")
IMAGE_DIRS = ("dicom-images-train", "dicom-images-test", "stage_2_images")
COL_IMAGE = "ImageId"
COL_PIXELS = "EncodedPixels"  # the published header spells it " EncodedPixels"
NO_MASK = "-1"
NO_PATIENT_ID = "no_patient_id"
DUPLICATE_FILE = "duplicate_file"
NOT_IN_TABLE = "not_in_label_table"
PATIENT_KIND = "siim_acr_pneumothorax-patient"
STUDY_KIND = "siim_acr_pneumothorax-study"

LAYOUT = """\
  <manual_dir>/                          the SIIM-ACR Pneumothorax Segmentation files
    train-rle.csv                        ImageId, EncodedPixels ("-1" = no pneumothorax;
                                         one row per mask); or stage_2_train.csv
    dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm
    dicom-images-test/...                (optional; labelled by stage_2_train.csv)
    stage_2_images/<ImageId>.dcm         (optional, the stage 2 release)"""


def read_rle_rows(path: Path, dataset: str) -> Iterator[tuple[int, str, str]]:
    """(line, ImageId, EncodedPixels) per row; header names are matched without their
    surrounding spaces. A ConfigError names the columns the header lacks."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in (COL_IMAGE, COL_PIXELS) if c not in header]
        if missing:
            raise ConfigError(f"{dataset}: '{path}' lacks the column(s) {missing}; its header is "
                              f"{header[:10]}. Is it the published file?")
        i, j = header.index(COL_IMAGE), header.index(COL_PIXELS)
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            cells = row + [""] * (max(i, j) + 1 - len(row))
            yield line, cells[i].strip(), cells[j].strip()


def has_mask(cell: str) -> bool:
    """An EncodedPixels cell: False for "-1", True for a run-length encoding (an even number of
    non-negative integers); ValueError otherwise."""
    if cell == NO_MASK:
        return False
    runs = cell.split()
    if not runs or len(runs) % 2 or not all(r.isdigit() for r in runs):
        raise ValueError(f"EncodedPixels {cell[:40]!r} is neither -1 nor a run-length encoding")
    return True


def index_images(root: Path, skips: SkipLog) -> dict[str, Path]:
    """ImageId (the file name without .dcm) -> path, over every image folder present."""
    found: dict[str, Path] = {}
    for folder in IMAGE_DIRS:
        for path in sorted((root / folder).rglob("*.dcm")) if (root / folder).is_dir() else ():
            if path.stem in found:
                skips.skip(DUPLICATE_FILE, path.relative_to(root).as_posix(),
                           f"same ImageId as {found[path.stem].relative_to(root).as_posix()}")
                continue
            found[path.stem] = path
    return found


@dataclasses.dataclass(eq=False)
class SiimAcrPneumothoraxConfig(SeededSplitConfig):
    """val_fraction / test_fraction of patients (SeededSplitConfig); every view is kept (the
    release holds PA and AP frontal views only)."""


class SiimAcrPneumothorax(DicomRadiographBuilder):
    """SIIM-ACR Pneumothorax Segmentation radiographs with the pneumothorax (any mask) label."""

    name = "siim_acr_pneumothorax"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [SiimAcrPneumothoraxConfig()]
    LABEL_NAMES = SIIM_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = IMAGE_DIRS

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        table = require_files(manual_dir, self.name, {"mask table": RLE_CSVS}, LAYOUT)["mask table"]
        if not any((manual_dir / folder).is_dir() for folder in IMAGE_DIRS):
            raise ConfigError(f"{self.name}: no image folder ({', '.join(IMAGE_DIRS)}) in manual folder "
                              f"'{manual_dir}'. Expected layout:\n{LAYOUT}")
        self.info.metadata["split_convention"] = cfg.split_convention("DICOM PatientID")
        masks: dict[str, bool] = {}  # ImageId -> any mask, in table order
        bad: dict[str, str] = {}
        for line, image_id, pixels in read_rle_rows(table, self.name):
            if not image_id:
                skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}", "empty ImageId")
                continue
            masks.setdefault(image_id, False)
            try:
                masks[image_id] |= has_mask(pixels)
            except ValueError as err:
                bad.setdefault(image_id, f"{table.name}:{line}: {err}")
        images = index_images(manual_dir, skips)
        for _ in images.keys() - masks.keys():
            skips.filter(NOT_IN_TABLE)
        kept = []
        for image_id, positive in masks.items():
            if image_id in bad:
                skips.skip(UNPARSEABLE_ROW, bad[image_id], f"ImageId {image_id}")
            elif image_id not in images:
                skips.skip(MISSING_FILE, f"{image_id}.dcm", f"in {table.name} but in none of "
                                                            f"{', '.join(IMAGE_DIRS)}")
            else:
                kept.append((image_id, positive))
        paths = [images[image_id] for image_id, _ in kept]
        planned = []
        for (image_id, positive), path, header in zip(kept, paths, read_headers(paths)):
            source = path.relative_to(manual_dir).as_posix()
            if isinstance(header, ImageReadError):
                skip_unreadable(skips, header, source)
                continue
            if not header.patient_id:
                skips.skip(NO_PATIENT_ID, source, "the DICOM header has no PatientID to split by")
                continue
            study = header.study_uid or (path.parts[-3] if len(path.relative_to(manual_dir).parts) >= 4
                                         else image_id)
            planned.append(planned_radiograph(
                key=image_id,
                split=seeded_split(f"siim_acr_pneumothorax/{header.patient_id}", cfg.split_seed,
                                   cfg.fractions()),
                patient=ids(PATIENT_KIND, header.patient_id), study=ids(STUDY_KIND, study),
                image_path=path, source_path=source, report="",
                labels=np.array([int(positive)], np.int8),
                view=header.view, sex=header.sex, age=header.age,
            ))
        return planned
