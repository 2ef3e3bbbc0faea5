"""RSNA Pneumonia Detection Challenge (Kaggle, 2018) from the user's copy: frontal chest
radiographs (DICOM, from NIH ChestX-ray14) with one label, `pneumonia` = the challenge's Target
(1: at least one box of lung opacity suggestive of pneumonia; 0: none). No reports (`report` is
empty). The detailed class ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal") is kept as
the text feature `detailed_class`, so "abnormal but not pneumonia" can be told apart from
"normal"; the boxes themselves are not stored.

View, sex and age come from each file's DICOM header (ViewPosition, PatientSex, PatientAge; the
Kaggle files write the age as a bare number of years).

Splits: Kaggle released no test labels, so every labelled image is split by a hash of
(split_seed, patientId) into train / val / test (default 70 / 15 / 15 %). RSNA's patientId names
one image; it is the only patient key the release gives (the challenge's images come from NIH
ChestX-ray14 with the NIH patient ids removed), so the split is disjoint in patientId, and images
of one real patient may still fall into different splits.

No raw id reaches a record: a file is named by its patientId, so source_path keeps only the
images folder, "stage_2_train_images/<16 hex>.dcm" (the file name replaced by its pseudonym;
pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import collections
import dataclasses
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
from radfm_jax.data.builders.features import manual_cxr_features
from radfm_jax.data.builders.manual_folder import read_csv_rows
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.image_files import ImageReadError
from radfm_jax.errors import ConfigError

RSNA_FINDINGS: tuple[str, ...] = ("pneumonia",)
# The release's files, newest stage first; a copy is read as one stage (its labels, class
# table and images together).
STAGES = ("stage_2", "stage_1")
COL_PATIENT = "patientId"
COL_TARGET = "Target"
COL_CLASS = "class"
OPACITY_CLASS = "Lung Opacity"  # the detailed class of every Target-1 image
CLASSES = (OPACITY_CLASS, "No Lung Opacity / Not Normal", "Normal")
LABEL_CONFLICT = "label_conflict"
PATIENT_KIND = "rsna_pneumonia-patient"
STUDY_KIND = "rsna_pneumonia-study"

LAYOUT = """\
  <manual_dir>/                          the Kaggle rsna-pneumonia-detection-challenge folder
    stage_2_train_labels.csv             patientId, x, y, width, height, Target
                                         (one row per box; one row with Target 0 when none)
    stage_2_detailed_class_info.csv      patientId, class (Lung Opacity /
                                         No Lung Opacity / Not Normal / Normal); optional
    stage_2_train_images/<patientId>.dcm
  (a stage 1 copy's stage_1_train_labels.csv, stage_1_detailed_class_info.csv and
   stage_1_train_images/ are read the same way)"""


def find_stage(root: Path, dataset: str) -> tuple[Path, Path | None, Path]:
    """(labels table, class table or None, images folder) of the newest stage present."""
    for stage in STAGES:
        labels = root / f"{stage}_train_labels.csv"
        if labels.is_file():
            images = root / f"{stage}_train_images"
            if not images.is_dir():
                raise ConfigError(f"{dataset}: '{labels.name}' is in '{root}' but its images folder "
                                  f"'{images.name}/' is not. Expected layout:\n{LAYOUT}")
            classes = root / f"{stage}_detailed_class_info.csv"
            return labels, classes if classes.is_file() else None, images
    raise ConfigError(f"{dataset}: missing in manual folder '{root}': "
                      f"{' or '.join(f'{s}_train_labels.csv' for s in STAGES)}. Expected layout:\n{LAYOUT}")


@dataclasses.dataclass
class _Image:
    """What the tables say about one patientId."""

    targets: set[int] = dataclasses.field(default_factory=set)
    classes: set[str] = dataclasses.field(default_factory=set)
    bad: str = ""  # where an unparseable row of this image was, when one was


def read_tables(labels: Path, classes: Path | None, dataset: str,
                skips: SkipLog) -> dict[str, _Image]:
    """patientId -> its rows' targets and detailed classes, in table order."""
    images: dict[str, _Image] = collections.defaultdict(_Image)
    for line, row in enumerate(read_csv_rows(labels, dataset, (COL_PATIENT, COL_TARGET)), start=2):
        pid = row[COL_PATIENT].strip()
        if not pid:
            skips.skip(UNPARSEABLE_ROW, f"{labels.name}:{line}", "empty patientId")
            continue
        try:
            target = int(float(row[COL_TARGET]))
            if target not in (0, 1):
                raise ValueError
        except ValueError:
            images[pid].bad = images[pid].bad or f"{labels.name}:{line}: Target {row[COL_TARGET]!r}"
            continue
        images[pid].targets.add(target)
    if classes is not None:
        for line, row in enumerate(read_csv_rows(classes, dataset, (COL_PATIENT, COL_CLASS)), start=2):
            pid, name = row[COL_PATIENT].strip(), row[COL_CLASS].strip()
            if pid not in images:
                continue  # a class row without a label row: nothing to label
            if name not in CLASSES:
                images[pid].bad = images[pid].bad or f"{classes.name}:{line}: class {name!r}"
                continue
            images[pid].classes.add(name)
    return images


@dataclasses.dataclass(eq=False)
class RsnaPneumoniaConfig(SeededSplitConfig):
    """val_fraction / test_fraction of patientIds (SeededSplitConfig); every view is kept (the
    release holds PA and AP frontal views only)."""


class RsnaPneumonia(DicomRadiographBuilder):
    """RSNA Pneumonia Detection Challenge radiographs with the pneumonia (Target) label."""

    name = "rsna_pneumonia"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [RsnaPneumoniaConfig()]
    LABEL_NAMES = RSNA_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = tuple(f"{stage}_train_images" for stage in STAGES)

    def _features(self) -> tfds.features.FeaturesDict:
        features = dict(manual_cxr_features(self.builder_config.spec.size[0], self.LABEL_NAMES))
        features["detailed_class"] = tfds.features.Text()
        return tfds.features.FeaturesDict(features)

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        labels_csv, classes_csv, images_dir = find_stage(manual_dir, self.name)
        self.info.metadata["split_convention"] = cfg.split_convention("patientId")
        kept: list[tuple[str, int, str]] = []
        for pid, image in read_tables(labels_csv, classes_csv, self.name, skips).items():
            if image.bad:
                skips.skip(UNPARSEABLE_ROW, image.bad, f"patientId {pid}")
                continue
            if len(image.targets) != 1:
                skips.skip(LABEL_CONFLICT, pid, f"{labels_csv.name} gives Target 0 and 1")
                continue
            target = image.targets.pop()
            if len(image.classes) > 1 or (image.classes and
                                          (OPACITY_CLASS in image.classes) != (target == 1)):
                skips.skip(LABEL_CONFLICT, pid, f"Target {target} but class {sorted(image.classes)}")
                continue
            kept.append((pid, target, next(iter(image.classes), "")))
        paths = [images_dir / f"{pid}.dcm" for pid, *_ in kept]
        planned = []
        for (pid, target, detailed), path, header in zip(kept, paths, read_headers(paths)):
            source = path.relative_to(manual_dir).as_posix()
            if isinstance(header, ImageReadError):
                skip_unreadable(skips, header, source)
                continue
            planned.append(planned_radiograph(
                key=pid, split=seeded_split(f"rsna_pneumonia/{pid}", cfg.split_seed, cfg.fractions()),
                patient=ids(PATIENT_KIND, pid), study=ids(STUDY_KIND, pid), image_path=path,
                source_path=source, report="", labels=np.array([target], np.int8),
                view=header.view, sex=header.sex, age=header.age, detailed_class=detailed,
            ))
        return planned
