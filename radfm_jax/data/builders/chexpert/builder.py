"""CheXpert (CheXpert-v1.0 or CheXpert-v1.0-small) from the user's copy: frontal radiographs and
the 14 CheXpert labels. CheXpert ships no reports, so `report` is empty: use this data set for
evaluation (zero-shot, linear probes) and label fine-tuning, not for image-report pretraining.

Splits, by what the copy holds (the build records which in its metadata, `split_convention`):
- "valid_as_test" (CheXpert as first released): the official `valid.csv` (radiologist-consensus
  labels, 200 studies) is `test`; `train.csv` is split by patient into `train` and a seeded `val`
  (val_fraction of patients, from split_seed).
- "official_test" (the copy also holds the CheXpert test set that Stanford released in 2022 with
  CheXlocalize: `test_labels.csv`, the 500-study radiologist-consensus labels, and `test/`
  images, at the top of the manual folder or in a `CheXpert/` subfolder as CheXlocalize ships
  them): `test_labels.csv` is `test`, `valid.csv` is `val` and all of `train.csv` is `train`.
  The test table carries only Path and the 14 labels: frontal / lateral comes from the file name,
  a frontal test image's AP / PA is unknown ("FRONTAL", kept whenever both PA and AP are), and
  sex and age are unknown ("", -1).
Both conventions build into the same folder (its name depends only on the options), so after
adding the test set to a copy that was already built, delete that build to rebuild it.

No raw id reaches a record: patient_id / study_id are keyed pseudonyms, and source_path keeps
only the layout folders, e.g. "train/<16 hex>/<16 hex>/<16 hex>.jpg" for
train/patient00001/study1/view1_frontal.jpg (every part from the patient folder on replaced by
its pseudonym; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    ManualBuilder,
    PlannedExample,
    RadiographConfig,
    planned_radiograph,
)
from radfm_jax.data.builders.manual_folder import find_first, read_csv_rows, require_files
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.builders.table_fields import (
    apply_uncertain_policy,
    chexpert_value,
    parse_age,
    parse_sex,
)
from radfm_jax.data.findings import CHEXPERT_FINDINGS

log = logging.getLogger(__name__)

TRAIN_CSV = "train.csv"
VALID_CSV = "valid.csv"
# The 2022 test set, where the user put it: beside train.csv, or CheXlocalize's CheXpert/ folder
# (its Path cells, "test/patientN/studyM/viewK_frontal.jpg", are relative to the table's folder).
TEST_CSVS = ("test_labels.csv", "CheXpert/test_labels.csv")
VALID_AS_TEST = "valid_as_test"
OFFICIAL_TEST = "official_test"
COL_PATH = "Path"
COL_SEX = "Sex"
COL_AGE = "Age"
COL_FRONTAL_LATERAL = "Frontal/Lateral"
COL_AP_PA = "AP/PA"
# The label columns in CSV order, and the snake_case finding each one is.
LABEL_COLUMNS: dict[str, str] = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}
assert tuple(LABEL_COLUMNS.values()) == CHEXPERT_FINDINGS
COLUMNS = (COL_PATH, COL_SEX, COL_AGE, COL_FRONTAL_LATERAL, COL_AP_PA, *LABEL_COLUMNS)
# Path cells start with the release's folder name, e.g. "CheXpert-v1.0-small/train/patient00001/
# study1/view1_frontal.jpg"; images are looked up from "train/..." under the manual folder.
_PATH = re.compile(r"(?:^|/)((train|valid|test)/(patient\d+)/(study\d+)/[^/]+)$")
# Leading folders of source paths kept in records (the release's layout, no one's id).
SOURCE_FOLDERS = ("CheXpert-v1.0", "CheXpert-v1.0-small", "CheXpert", "train", "valid", "test")
# Keys shared with chexpert_plus: one patient gets the same pseudonym in both data sets.
PATIENT_KIND = "chexpert-patient"
STUDY_KIND = "chexpert-study"

LAYOUT = """\
  <manual_dir>/                      the CheXpert-v1.0 or CheXpert-v1.0-small folder
    train.csv, valid.csv             Path, Sex, Age, Frontal/Lateral, AP/PA, 14 label columns
    train/patient00001/study1/view1_frontal.jpg
    valid/patient64541/study1/view1_frontal.jpg
  and, when you have the CheXpert test set (2022, with CheXlocalize), optionally:
    test_labels.csv                  Path, 14 label columns (radiologist consensus)
    test/patient64741/study1/view1_frontal.jpg
  (or CheXlocalize's CheXpert/test_labels.csv and CheXpert/test/ inside the manual folder)"""


# CheXpert's tables hold a few ages of 0 in a cohort of adults' studies: a placeholder, not an age.
CHEXPERT_MIN_AGE = 1


@dataclasses.dataclass(frozen=True)
class CheXpertImage:
    """One row of train.csv / valid.csv (or of the test set's test_labels.csv)."""

    official_split: str  # "train" | "valid" | "test"
    relative_path: str  # "train/patient00001/study1/view1_frontal.jpg"
    patient: str  # "patient00001"
    study: str  # "patient00001/study1"
    view: str  # "PA", "AP", other AP/PA values, "FRONTAL" when blank, or "LATERAL"
    sex: str
    age: int
    labels: np.ndarray  # int8 (14,) CheXpert values, before the uncertain policy


def parse_row(row: dict[str, str]) -> CheXpertImage:
    """A CSV row as a CheXpertImage; ValueError naming the problem."""
    match = _PATH.search(row[COL_PATH].strip())
    if match is None:
        raise ValueError(f"Path {row[COL_PATH]!r} is not <split>/patientN/studyM/<file>")
    relative_path, official_split, patient, study = match.groups()
    frontal = row[COL_FRONTAL_LATERAL].strip()
    if frontal not in ("Frontal", "Lateral"):
        raise ValueError(f"Frontal/Lateral is {frontal!r}")
    view = "LATERAL" if frontal == "Lateral" else (row[COL_AP_PA].strip().upper() or "FRONTAL")
    labels = np.array([chexpert_value(row[c]) for c in LABEL_COLUMNS], dtype=np.int8)
    return CheXpertImage(official_split, relative_path, patient, f"{patient}/{study}", view,
                         parse_sex(row[COL_SEX]), parse_age(row[COL_AGE], min_age=CHEXPERT_MIN_AGE), labels)


def parse_test_row(row: dict[str, str]) -> CheXpertImage:
    """A test_labels.csv row (Path and the 14 labels; Sex, Age, Frontal/Lateral and AP/PA read
    when the table has them): frontal / lateral from the file name otherwise."""
    full = {c: (row.get(c) or "") for c in (COL_SEX, COL_AGE, COL_FRONTAL_LATERAL, COL_AP_PA)}
    full.update({c: row[c] or "" for c in (COL_PATH, *LABEL_COLUMNS)})
    if not full[COL_FRONTAL_LATERAL].strip():
        name = full[COL_PATH].strip().rsplit("/", 1)[-1].lower()
        full[COL_FRONTAL_LATERAL] = "Lateral" if "lateral" in name else "Frontal" if "frontal" in name else ""
    image = parse_row(full)
    if image.official_split != "test":
        raise ValueError(f"Path {row[COL_PATH]!r} of the test table is not test/patientN/studyM/<file>")
    return image


def _read_table(table: Path, dataset: str, columns: tuple[str, ...], parse, seen: set[str],
                skips: SkipLog) -> Iterator[CheXpertImage]:
    """The table's rows parsed by `parse`, skipping unparseable rows and paths already in `seen`."""
    for line, row in enumerate(read_csv_rows(table, dataset, columns), start=2):
        try:
            image = parse(row)
        except ValueError as err:
            skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}", str(err))
            continue
        if image.relative_path in seen:
            skips.skip(DUPLICATE_ROW, image.relative_path)
            continue
        seen.add(image.relative_path)
        yield image


def read_test_images(table: Path, dataset: str, skips: SkipLog) -> Iterator[CheXpertImage]:
    """Every parseable row of the test table, each path once."""
    yield from _read_table(table, dataset, (COL_PATH, *LABEL_COLUMNS), parse_test_row, set(), skips)


def _parse_train_or_valid_row(row: dict[str, str]) -> CheXpertImage:
    image = parse_row(row)
    if image.official_split == "test":  # test images come from the test table only
        raise ValueError(f"test/ path {image.relative_path!r}")
    return image


def read_images(root: Path, dataset: str, skips: SkipLog) -> Iterator[CheXpertImage]:
    """Every parseable row of train.csv and valid.csv under root, each path once."""
    tables = require_files(root, dataset, {"train table": [TRAIN_CSV], "valid table": [VALID_CSV]},
                           LAYOUT)
    seen: set[str] = set()
    for table in tables.values():
        yield from _read_table(table, dataset, COLUMNS, _parse_train_or_valid_row, seen, skips)


def split_of(image: CheXpertImage, seed: int, val_fraction: float, official_test: bool = False) -> str:
    """Without the test set: official valid -> test; official train -> train or val, seeded by
    patient. With it (official_test): test -> test, valid -> val, train -> train."""
    if image.official_split == "test":
        return "test"
    if image.official_split == "valid":
        return "val" if official_test else "test"
    if official_test:
        return "train"
    return seeded_split(f"chexpert/{image.patient}", seed,
                        {"train": 1.0 - val_fraction, "val": val_fraction})


def view_kept(image: CheXpertImage, views: tuple[str, ...]) -> bool:
    """Whether the build's views keep an image. The test table records no AP / PA, so a frontal
    test image ("FRONTAL") is kept whenever both PA and AP are."""
    if not views or image.view in views:
        return True
    return image.official_split == "test" and image.view == "FRONTAL" and {"PA", "AP"} <= set(views)


@dataclasses.dataclass(eq=False)
class ChexpertConfig(RadiographConfig):
    """views and val_fraction (patients of train.csv held out as val) as in RadiographConfig."""

    def _name_parts(self) -> list[str]:
        # No reports: text_target does not change the records, so it is not in the name.
        return [part for part in super()._name_parts() if not part.startswith("text-")]


class Chexpert(ManualBuilder):
    """CheXpert chest radiographs with 14 CheXpert labels (no reports)."""

    name = "chexpert"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [ChexpertConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = SOURCE_FOLDERS

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        test_table = find_first(manual_dir, TEST_CSVS)
        official_test = test_table is not None
        self.info.metadata["split_convention"] = OFFICIAL_TEST if official_test else VALID_AS_TEST
        sources = [(manual_dir, image) for image in read_images(manual_dir, self.name, skips)]
        if official_test:
            log.info("%s: %s found: test = the CheXpert test set, val = valid.csv, train = train.csv",
                     self.name, test_table.relative_to(manual_dir))
            sources += [(test_table.parent, image)
                        for image in read_test_images(test_table, self.name, skips)]
        planned = []
        for root, image in sources:
            if not view_kept(image, cfg.views):
                skips.filter(f"view_{image.view}")
                continue
            path = root / image.relative_path
            planned.append(planned_radiograph(
                key=path.relative_to(manual_dir).as_posix(),
                split=split_of(image, cfg.split_seed, cfg.val_fraction, official_test),
                patient=ids(PATIENT_KIND, image.patient), study=ids(STUDY_KIND, image.study),
                image_path=path, source_path=path.relative_to(manual_dir).as_posix(),
                report="", labels=apply_uncertain_policy(image.labels, cfg.uncertain_policy),
                view=image.view, sex=image.sex, age=image.age,
            ))
        return planned
