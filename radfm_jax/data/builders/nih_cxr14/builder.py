"""NIH ChestX-ray14 from the user's copy: frontal radiographs with the data set's own 14
text-mined labels plus no_finding (its vocabulary is not CheXpert's: Infiltration, Mass, Nodule,
Emphysema, Fibrosis, Pleural_Thickening and Hernia have no CheXpert column). Labels are positive
(1) or negative (0); there are no uncertain labels and no reports (`report` is empty).

Splits: the official `test_list.txt` is `test`; `train_val_list.txt` is split by patient into
`train` and a seeded `val` (val_fraction of patients, from split_seed). Both lists are
patient-disjoint by construction, which the build checks.

No raw id reaches a record: an image's name is its patient id and follow-up number, so
source_path keeps only the image folders, "images_001/images/<16 hex>.png" (the file name
replaced by its pseudonym; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
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
from radfm_jax.data.builders.manual_folder import read_csv_rows, require_files
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, MISSING_FILE, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.builders.table_fields import parse_age, parse_sex
from radfm_jax.data.findings import NEGATIVE, POSITIVE

DATA_ENTRY_CSVS = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
COL_IMAGE = "Image Index"
COL_FINDINGS = "Finding Labels"  # "|"-separated, or "No Finding"
COL_PATIENT = "Patient ID"
COL_AGE = "Patient Age"
COL_SEX = "Patient Gender"
COL_VIEW = "View Position"
COLUMNS = (COL_IMAGE, COL_FINDINGS, COL_PATIENT, COL_AGE, COL_SEX, COL_VIEW)
# The CSV's finding names and the snake_case label each one is, in label-vector order.
FINDING_NAMES: dict[str, str] = {
    "No Finding": "no_finding",
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "pleural_effusion",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrosis",
    "Pleural_Thickening": "pleural_thickening",
    "Hernia": "hernia",
}
NIH_FINDINGS: tuple[str, ...] = tuple(FINDING_NAMES.values())
# Images ship in images/ or in the 12 archives' folders images_001/images ... images_012/images.
IMAGE_FOLDERS = ("images", *(f"images_{i:03d}/images" for i in range(1, 13)))
SOURCE_FOLDERS = tuple(dict.fromkeys(part for folder in IMAGE_FOLDERS for part in folder.split("/")))
PATIENT_KIND = "nih_cxr14-patient"
STUDY_KIND = "nih_cxr14-study"

LAYOUT = """\
  <manual_dir>/
    Data_Entry_2017_v2020.csv (or Data_Entry_2017.csv)
                                     Image Index, Finding Labels, Follow-up #, Patient ID,
                                     Patient Age, Patient Gender, View Position, ...
    train_val_list.txt, test_list.txt
    images/00000001_000.png          or images_001/images/00000001_000.png ... images_012/..."""


def parse_findings(cell: str) -> np.ndarray:
    """'Cardiomegaly|Effusion' -> int8 (15,) of positive / negative; ValueError on an unknown name."""
    names = [n.strip() for n in cell.split("|") if n.strip()]
    unknown = [n for n in names if n not in FINDING_NAMES]
    if not names or unknown:
        raise ValueError(f"Finding Labels {cell!r} has unknown or no names {unknown}")
    labels = np.full(len(NIH_FINDINGS), NEGATIVE, dtype=np.int8)
    for n in names:
        labels[NIH_FINDINGS.index(FINDING_NAMES[n])] = POSITIVE
    return labels


def index_images(root: Path) -> dict[str, Path]:
    """File name -> path over every image folder present."""
    return {p.name: p for folder in IMAGE_FOLDERS if (root / folder).is_dir()
            for p in (root / folder).iterdir()}


@dataclasses.dataclass(eq=False)
class NihCxr14Config(RadiographConfig):
    """views (the set has PA and AP) and val_fraction as in RadiographConfig."""

    val_fraction: float = 0.1

    def _name_parts(self) -> list[str]:
        # Neither reports nor uncertain labels: text_target and uncertain_policy change nothing.
        return [part for part in super()._name_parts() if not part.startswith(("text-", "u-"))]


class NihCxr14(ManualBuilder):
    """NIH ChestX-ray14 radiographs with its 14 findings plus no_finding (no reports)."""

    name = "nih_cxr14"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [NihCxr14Config()]
    LABEL_NAMES = NIH_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = SOURCE_FOLDERS

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        files = require_files(manual_dir, self.name, {
            "data entry table": DATA_ENTRY_CSVS, "train/val list": [TRAIN_VAL_LIST],
            "test list": [TEST_LIST]}, LAYOUT)
        official = {name: "train" for name in files["train/val list"].read_text().split()}
        official.update({name: "test" for name in files["test list"].read_text().split()})
        images = index_images(manual_dir)
        planned, seen = [], set()
        table = files["data entry table"]
        for line, row in enumerate(read_csv_rows(table, self.name, COLUMNS), start=2):
            name = row[COL_IMAGE].strip()
            try:
                labels = parse_findings(row[COL_FINDINGS])
                patient = str(int(row[COL_PATIENT]))
                age = parse_age(row[COL_AGE])
            except ValueError as err:
                skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}", str(err))
                continue
            if name in seen:
                skips.skip(DUPLICATE_ROW, name)
                continue
            seen.add(name)
            view = row[COL_VIEW].strip().upper()
            if cfg.views and view not in cfg.views:
                skips.filter(f"view_{view}")
                continue
            if name not in official:
                skips.filter("in_no_official_list")
                continue
            if name not in images:
                skips.skip(MISSING_FILE, name, f"not in any of {IMAGE_FOLDERS[0]}/, images_0NN/images/")
                continue
            split = official[name]
            if split == "train":
                split = seeded_split(f"nih_cxr14/{patient}", cfg.split_seed,
                                     {"train": 1.0 - cfg.val_fraction, "val": cfg.val_fraction})
            source = images[name].relative_to(manual_dir).as_posix()
            planned.append(planned_radiograph(
                key=name, split=split, patient=ids(PATIENT_KIND, patient),
                # A "study" is one follow-up visit: the image name without its extension.
                study=ids(STUDY_KIND, Path(name).stem),
                image_path=images[name], source_path=source, report="", labels=labels,
                view=view, sex=parse_sex(row[COL_SEX]), age=age,
            ))
        return planned
