"""NIH ChestX-ray14 with Google's radiologist-adjudicated labels of four findings (Majkowska et
al., Radiology 2020, "Chest radiograph interpretation with deep learning models"), as the
separate data set `nih_cxr14_expert`: the relabelled images only, each with the four expert
labels in place of NIH's text-mined ones.

Labels, in the tables' column order: fracture (Fracture), pneumothorax (Pneumothorax),
airspace_opacity (Airspace opacity), lung_lesion (Nodule or mass: CheXpert's Lung Lesion is
"nodule or mass"). The adjudicated columns hold YES / NO (HEDGE, which only the individual
readers' table uses, would be read as uncertain); a blank cell means the image was not
adjudicated, and such rows are left out.

Splits: the expert test table (1,962 images of NIH's official test list) is `test`; the expert
validation table (2,412 images) is split by patient into `train` and a seeded `val`
(val_fraction of its patients, from split_seed), so every split carries all four expert labels.
NIH's text-mined labels have no fracture finding, which is why the rest of ChestX-ray14 is not
used for training here (nih_cxr14 is the data set with those labels).

No raw id reaches a record: source_path is pseudonymous as in nih_cxr14
("images_001/images/<16 hex>.png"; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import csv
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
from radfm_jax.data.builders.manual_folder import find_first, read_csv_rows
from radfm_jax.data.builders.nih_cxr14.builder import (
    IMAGE_FOLDERS,
    PATIENT_KIND,
    SOURCE_FOLDERS,
    STUDY_KIND,
    index_images,
)
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, MISSING_FILE, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.builders.table_fields import parse_age, parse_sex
from radfm_jax.data.findings import NEGATIVE, POSITIVE, UNCERTAIN
from radfm_jax.errors import ConfigError

# The NIH download's file names, or the Google Cloud bucket's folder.
EXPERT_TABLES: dict[str, tuple[str, ...]] = {
    "test": ("four_findings_expert_labels_test_labels.csv", "four_findings_expert_labels/test_labels.csv"),
    "validation": ("four_findings_expert_labels_validation_labels.csv",
                   "four_findings_expert_labels/validation_labels.csv"),
}
COL_IMAGE = "Image Index"
COL_PATIENT = "Patient ID"
COL_AGE = "Patient Age"  # the NIH metadata columns the tables repeat; read when present
COL_SEX = "Patient Gender"
COL_VIEW = "View Position"
# Expert label columns -> label names, in label-vector order. The individual readers' table
# spells the last one "Nodule/mass"; either spelling is read.
EXPERT_COLUMNS: dict[str, str] = {
    "Fracture": "fracture",
    "Pneumothorax": "pneumothorax",
    "Airspace opacity": "airspace_opacity",
    "Nodule or mass": "lung_lesion",
}
COLUMN_ALIASES = {"Nodule or mass": ("Nodule or mass", "Nodule/mass")}
EXPERT_FINDINGS: tuple[str, ...] = tuple(EXPERT_COLUMNS.values())
VALUES = {"YES": POSITIVE, "NO": NEGATIVE, "HEDGE": UNCERTAIN}
NOT_ADJUDICATED = "not_adjudicated"

LAYOUT = """\
  <manual_dir>/                          your NIH ChestX-ray14 folder, plus Google's expert labels
    four_findings_expert_labels_test_labels.csv        (or four_findings_expert_labels/test_labels.csv)
    four_findings_expert_labels_validation_labels.csv  (or .../validation_labels.csv)
                                     Image Index, Patient ID, Patient Age, Patient Gender,
                                     View Position, ..., Fracture, Pneumothorax,
                                     Airspace opacity, Nodule or mass (YES / NO)
    images/00000001_000.png          or images_001/images/00000001_000.png ... images_012/..."""


def expert_labels(row: dict[str, str], columns: dict[str, str]) -> np.ndarray | None:
    """int8 (4,) from a row's expert columns; None when the image was not adjudicated (a blank
    cell); ValueError on any other value."""
    cells = [row[columns[c]].strip().upper() for c in EXPERT_COLUMNS]
    if any(not cell for cell in cells):
        return None
    unknown = [cell for cell in cells if cell not in VALUES]
    if unknown:
        raise ValueError(f"expert label(s) {unknown} are not YES, NO or HEDGE")
    return np.array([VALUES[cell] for cell in cells], np.int8)


def label_columns(path: Path, dataset: str) -> dict[str, str]:
    """Each expert column -> the spelling this table's header uses."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        names = set(csv.DictReader(handle).fieldnames or ())
    found = {}
    for column in EXPERT_COLUMNS:
        spelling = next((a for a in COLUMN_ALIASES.get(column, (column,)) if a in names), None)
        if spelling is None:
            raise ConfigError(f"{dataset}: '{path}' lacks the expert label column {column!r}; its "
                              f"header is {sorted(names)[:20]}. Is it the published file?")
        found[column] = spelling
    return found


@dataclasses.dataclass(eq=False)
class NihCxr14ExpertConfig(RadiographConfig):
    """views (the tables have PA and AP) as in RadiographConfig; val_fraction: the share of the
    expert validation table's patients held out as val (the rest is train)."""

    val_fraction: float = 0.2

    def _name_parts(self) -> list[str]:
        # Neither reports nor uncertain adjudicated labels: text_target and uncertain_policy
        # change nothing.
        return [part for part in super()._name_parts() if not part.startswith(("text-", "u-"))]


class NihCxr14Expert(ManualBuilder):
    """NIH ChestX-ray14 images relabelled by radiologists for four findings (no reports)."""

    name = "nih_cxr14_expert"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [NihCxr14ExpertConfig()]
    LABEL_NAMES = EXPERT_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = SOURCE_FOLDERS

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        tables = {role: find_first(manual_dir, names) for role, names in EXPERT_TABLES.items()}
        missing = [" or ".join(EXPERT_TABLES[role]) for role, path in tables.items() if path is None]
        if missing:
            raise ConfigError(f"{self.name}: missing in manual folder '{manual_dir}': "
                              f"{'; '.join(missing)}. Expected layout:\n{LAYOUT}")
        self.info.metadata["split_convention"] = (
            "test = the expert test table; train / val = the expert validation table split by "
            f"patient (val {cfg.val_fraction:g}, seed {cfg.split_seed})")
        images = index_images(manual_dir)
        planned, seen = [], set()
        for role, table in tables.items():
            columns = label_columns(table, self.name)
            for line, row in enumerate(read_csv_rows(table, self.name, (COL_IMAGE, COL_PATIENT)), start=2):
                name = row[COL_IMAGE].strip()
                try:
                    labels = expert_labels(row, columns)
                    patient = str(int(row[COL_PATIENT]))
                    age = parse_age(row.get(COL_AGE) or "")
                except ValueError as err:
                    skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}", str(err))
                    continue
                if labels is None:
                    skips.filter(NOT_ADJUDICATED)
                    continue
                if name in seen:
                    skips.skip(DUPLICATE_ROW, name, f"again in {table.name}")
                    continue
                seen.add(name)
                view = (row.get(COL_VIEW) or "").strip().upper()
                if cfg.views and view and view not in cfg.views:
                    skips.filter(f"view_{view}")
                    continue
                if name not in images:
                    skips.skip(MISSING_FILE, name, f"not in any of {IMAGE_FOLDERS[0]}/, images_0NN/images/")
                    continue
                split = "test" if role == "test" else seeded_split(
                    f"nih_cxr14/{patient}", cfg.split_seed,
                    {"train": 1.0 - cfg.val_fraction, "val": cfg.val_fraction})
                planned.append(planned_radiograph(
                    key=name, split=split, patient=ids(PATIENT_KIND, patient),
                    study=ids(STUDY_KIND, Path(name).stem), image_path=images[name],
                    source_path=images[name].relative_to(manual_dir).as_posix(), report="",
                    labels=labels, view=view, sex=parse_sex(row.get(COL_SEX) or ""), age=age,
                ))
        return planned
