"""MIMIC-CXR-JPG (2.0.0 / 2.1.0) with MIMIC-CXR's free-text reports, from the user's copy.

One record per image; the text is the report's target section (data.text_target), the labels
are the CheXpert labeler's or NegBio's (config option `labeler`), uncertain ones handled by
`uncertain_policy`. Splits are the official ones (train / validate -> val / test). MIMIC-CXR-JPG
has no sex or age, so those are "" and -1.

No raw id reaches a record: patient_id / study_id are keyed pseudonyms, and source_path keeps
only the layout folder, "files/<16 hex>/<16 hex>/<16 hex>/<16 hex>.jpg" (the pXX group, subject,
study and dicom_id each replaced by its pseudonym; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.data.builders.chexpert.builder import LABEL_COLUMNS
from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    ManualBuilder,
    ManualBuilderConfig,
    PlannedExample,
    planned_radiograph,
    views_name,
)
from radfm_jax.data.builders.manual_folder import (
    find_first,
    read_csv_rows,
    read_text_file,
    require_files,
)
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, EMPTY_REPORT, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.builders.table_fields import apply_uncertain_policy, chexpert_value
from radfm_jax.data.findings import CHEXPERT_FINDINGS, NOT_MENTIONED
from radfm_jax.data.report_sections import report_target
from radfm_jax.errors import ConfigError

SPLIT_CSV = ("mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-split.csv")
METADATA_CSV = ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv")
LABEL_CSVS = {
    "chexpert": ("mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-chexpert.csv"),
    "negbio": ("mimic-cxr-2.0.0-negbio.csv.gz", "mimic-cxr-2.0.0-negbio.csv"),
}
COL_DICOM = "dicom_id"
COL_STUDY = "study_id"
COL_SUBJECT = "subject_id"
COL_SPLIT = "split"
COL_VIEW = "ViewPosition"
OFFICIAL_SPLITS = {"train": "train", "validate": "val", "test": "test"}
REPORTS_ZIP = "mimic-cxr-reports.zip"
# Extracted reports: files/pXX/pNNNNNNNN/sMMMMMMMM.txt, beside the image folders or in their own.
REPORT_ROOTS = (".", "mimic-cxr-reports")
MISSING_REPORT = "missing_report"
PATIENT_KIND = "mimic_cxr-patient"
STUDY_KIND = "mimic_cxr-study"

LAYOUT = """\
  <manual_dir>/                          MIMIC-CXR-JPG 2.0.0 / 2.1.0
    mimic-cxr-2.0.0-split.csv.gz         dicom_id, study_id, subject_id, split
    mimic-cxr-2.0.0-metadata.csv.gz      dicom_id, subject_id, study_id, ViewPosition, ...
    mimic-cxr-2.0.0-chexpert.csv.gz      subject_id, study_id, 14 label columns
    mimic-cxr-2.0.0-negbio.csv.gz        (the same columns; for labeler="negbio")
    files/p10/p10000032/s50414267/<dicom_id>.jpg
  and MIMIC-CXR's reports, one of:
    mimic-cxr-reports.zip
    files/p10/p10000032/s50414267.txt    (the zip extracted into the manual folder)
    mimic-cxr-reports/files/p10/p10000032/s50414267.txt"""

_ZIP_MEMBER = re.compile(r"(?:^|/)p(\d+)/s(\d+)\.txt$")


def study_folder(subject: str, study: str) -> str:
    """files/pXX/pNNNNNNNN/sMMMMMMMM, the layout MIMIC-CXR(-JPG) shares for images and reports."""
    return f"files/p{subject[:2]}/p{subject}/s{study}"


class Reports:
    """MIMIC-CXR report texts by (subject, study), from extracted files or the zip."""

    def __init__(self, manual_dir: Path):
        self.roots = [manual_dir / r for r in REPORT_ROOTS if (manual_dir / r / "files").is_dir()]
        zip_path = manual_dir / REPORTS_ZIP
        self.zip = zipfile.ZipFile(zip_path) if zip_path.is_file() else None
        self.members = {}
        if self.zip is not None:
            for name in self.zip.namelist():
                match = _ZIP_MEMBER.search(name)
                if match:
                    self.members[match.groups()] = name
        if self.zip is None and not any(self._any_extracted(root) for root in self.roots):
            raise ConfigError(f"mimic_cxr: no reports in manual folder '{manual_dir}' (neither "
                              f"{REPORTS_ZIP} nor extracted files/pXX/pN/sM.txt). Expected "
                              f"layout:\n{LAYOUT}")

    @staticmethod
    def _any_extracted(root: Path) -> bool:
        return next(root.glob("files/p*/p*/s*.txt"), None) is not None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def get(self, subject: str, study: str) -> tuple[str | None, str]:
        """(text or None when absent, where it was looked for)."""
        relative = study_folder(subject, study) + ".txt"
        for root in self.roots:
            if (root / relative).is_file():
                return read_text_file(root / relative), relative
        member = self.members.get((subject, study))
        if member is not None:
            return self.zip.read(member).decode("utf-8", errors="replace"), f"{REPORTS_ZIP}:{member}"
        return None, relative


def read_labels(path: Path, dataset: str, skips: SkipLog) -> dict[tuple[str, str], np.ndarray]:
    """(subject, study) -> int8 (14,) CheXpert values, in CHEXPERT_FINDINGS order."""
    columns = {finding: column for column, finding in LABEL_COLUMNS.items()}
    labels = {}
    for line, row in enumerate(read_csv_rows(path, dataset, [COL_SUBJECT, COL_STUDY, *LABEL_COLUMNS]),
                               start=2):
        try:
            vector = np.array([chexpert_value(row[columns[f]]) for f in CHEXPERT_FINDINGS], np.int8)
        except ValueError as err:
            skips.skip(UNPARSEABLE_ROW, f"{path.name}:{line}", str(err))
            continue
        labels[(row[COL_SUBJECT].strip(), row[COL_STUDY].strip())] = vector
    return labels


@dataclasses.dataclass(eq=False)
class MimicCxrConfig(ManualBuilderConfig):
    """labeler: which label file (chexpert or negbio); views: ViewPosition values kept (empty =
    all)."""

    labeler: Literal["chexpert", "negbio"] = "chexpert"
    views: tuple[str, ...] = ("PA", "AP")

    def __post_init__(self):
        if self.labeler not in LABEL_CSVS:
            raise ValueError(f"labeler must be one of {sorted(LABEL_CSVS)}, got {self.labeler!r}")
        self.views = tuple(v.upper() for v in self.views)
        super().__post_init__()

    def _name_parts(self) -> list[str]:
        return [*super()._name_parts(), self.labeler, views_name(self.views)]


class MimicCxr(ManualBuilder):
    """MIMIC-CXR-JPG chest radiographs with report text and CheXpert / NegBio labels."""

    name = "mimic_cxr"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [MimicCxrConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = ("files",)

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        files = require_files(manual_dir, self.name, {
            "split table": SPLIT_CSV, "metadata table": METADATA_CSV,
            f"{cfg.labeler} label table": LABEL_CSVS[cfg.labeler]}, LAYOUT)
        if find_first(manual_dir, ["files"]) is None:
            raise ConfigError(f"mimic_cxr: no files/ image folder in '{manual_dir}'. Expected "
                              f"layout:\n{LAYOUT}")
        reports = Reports(manual_dir)
        try:
            return self._plan_images(manual_dir, files, reports, ids, skips)
        finally:
            reports.close()

    def _plan_images(self, manual_dir: Path, files: dict[str, Path], reports: Reports,
                     ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        views = {row[COL_DICOM].strip(): row[COL_VIEW].strip().upper() for row in read_csv_rows(
            files["metadata table"], self.name, [COL_DICOM, COL_VIEW])}
        labels = read_labels(files[f"{cfg.labeler} label table"], self.name, skips)
        texts: dict[tuple[str, str], str] = {}  # one report per study, many images
        planned, seen = [], set()
        table = files["split table"]
        for line, row in enumerate(read_csv_rows(
                table, self.name, [COL_DICOM, COL_STUDY, COL_SUBJECT, COL_SPLIT]), start=2):
            dicom, study, subject = (row[c].strip() for c in (COL_DICOM, COL_STUDY, COL_SUBJECT))
            split = OFFICIAL_SPLITS.get(row[COL_SPLIT].strip())
            if split is None or not (dicom and study.isdigit() and subject.isdigit()):
                skips.skip(UNPARSEABLE_ROW, f"{table.name}:{line}",
                           f"expected ids and a split in {sorted(OFFICIAL_SPLITS)}")
                continue
            if dicom in seen:
                skips.skip(DUPLICATE_ROW, dicom)
                continue
            seen.add(dicom)
            view = views.get(dicom, "")
            if cfg.views and view not in cfg.views:
                skips.filter(f"view_{view or 'unknown'}")
                continue
            if (subject, study) not in texts:
                raw, where = reports.get(subject, study)
                if raw is None:
                    skips.skip(MISSING_REPORT, where)
                    texts[(subject, study)] = ""
                    continue
                texts[(subject, study)] = report_target(raw, cfg.text_target)
                if not texts[(subject, study)]:
                    skips.skip(EMPTY_REPORT, where, f"no usable {cfg.text_target} text")
            text = texts[(subject, study)]
            if not text:
                continue  # its study's report was counted once above
            source = f"{study_folder(subject, study)}/{dicom}.jpg"
            vector = labels.get((subject, study))
            if vector is None:
                vector = np.full(len(CHEXPERT_FINDINGS), NOT_MENTIONED, np.int8)
            # MIMIC-CXR-JPG records neither sex nor age.
            planned.append(planned_radiograph(
                key=dicom, split=split, patient=ids(PATIENT_KIND, subject),
                study=ids(STUDY_KIND, study), image_path=manual_dir / source, source_path=source,
                report=text, labels=apply_uncertain_policy(vector, cfg.uncertain_policy), view=view,
            ))
        return planned
