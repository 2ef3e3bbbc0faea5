"""CheXpert (CheXpert-v1.0 or CheXpert-v1.0-small) from the user's copy: frontal radiographs and
the 14 CheXpert labels. CheXpert ships no reports, so `report` is empty: use this data set for
evaluation (zero-shot, linear probes) and label fine-tuning, not for image-report pretraining.

Splits: the official `valid.csv` (radiologist-consensus labels) is `test`; `train.csv` is split
by patient into `train` and a seeded `val` (val_fraction of patients, from split_seed).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from radfm_jax.data.builders.common import (
    ManualBuilder,
    PlannedExample,
    RadiographConfig,
    planned_radiograph,
)
from radfm_jax.data.builders.manual_folder import read_csv_rows, require_files
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

TRAIN_CSV = "train.csv"
VALID_CSV = "valid.csv"
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
_PATH = re.compile(r"(?:^|/)((train|valid)/(patient\d+)/(study\d+)/[^/]+)$")
# Keys shared with chexpert_plus: one patient gets the same pseudonym in both data sets.
PATIENT_KIND = "chexpert-patient"
STUDY_KIND = "chexpert-study"

LAYOUT = """\
  <manual_dir>/                      the CheXpert-v1.0 or CheXpert-v1.0-small folder
    train.csv, valid.csv             Path, Sex, Age, Frontal/Lateral, AP/PA, 14 label columns
    train/patient00001/study1/view1_frontal.jpg
    valid/patient64541/study1/view1_frontal.jpg"""


@dataclasses.dataclass(frozen=True)
class CheXpertImage:
    """One row of train.csv / valid.csv."""

    official_split: str  # "train" | "valid"
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
                         parse_sex(row[COL_SEX]), parse_age(row[COL_AGE]), labels)


def read_images(root: Path, dataset: str, skips: SkipLog) -> Iterator[CheXpertImage]:
    """Every parseable row of train.csv and valid.csv under root, each path once."""
    tables = require_files(root, dataset, {"train table": [TRAIN_CSV], "valid table": [VALID_CSV]},
                           LAYOUT)
    seen: set[str] = set()
    for table in tables.values():
        for line, row in enumerate(read_csv_rows(table, dataset, COLUMNS), start=2):
            try:
                image = parse_row(row)
            except ValueError as err:
                skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}", str(err))
                continue
            if image.relative_path in seen:
                skips.skip(DUPLICATE_ROW, image.relative_path)
                continue
            seen.add(image.relative_path)
            yield image


def split_of(image: CheXpertImage, seed: int, val_fraction: float) -> str:
    """Official valid -> test; official train -> train or val, seeded by patient."""
    if image.official_split == "valid":
        return "test"
    return seeded_split(f"chexpert/{image.patient}", seed,
                        {"train": 1.0 - val_fraction, "val": val_fraction})


@dataclasses.dataclass(eq=False)
class ChexpertConfig(RadiographConfig):
    """views and val_fraction (patients of train.csv held out as val) as in RadiographConfig."""

    def _name_parts(self) -> list[str]:
        # No reports: text_target does not change the records, so it is not in the name.
        return [part for part in super()._name_parts() if not part.startswith("text-")]


class Chexpert(ManualBuilder):
    """CheXpert chest radiographs with 14 CheXpert labels (no reports)."""

    name = "chexpert"
    BUILDER_CONFIGS = [ChexpertConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = LAYOUT

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        planned = []
        for image in read_images(manual_dir, self.name, skips):
            if cfg.views and image.view not in cfg.views:
                skips.filter(f"view_{image.view}")
                continue
            planned.append(planned_radiograph(
                key=image.relative_path,
                split=split_of(image, cfg.split_seed, cfg.val_fraction),
                patient=ids(PATIENT_KIND, image.patient), study=ids(STUDY_KIND, image.study),
                image_path=manual_dir / image.relative_path, source_path=image.relative_path,
                report="", labels=apply_uncertain_policy(image.labels, cfg.uncertain_policy),
                view=image.view, sex=image.sex, age=image.age,
            ))
        return planned
