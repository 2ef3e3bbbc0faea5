"""CheXpert Plus from the user's copy: CheXpert's radiographs and labels joined with the
CheXpert Plus report table (one report per image row, its findings / impression sections
already extracted). The text is the target section (data.text_target); labels and splits are
CheXpert's (see radfm_jax/data/builders/chexpert: valid -> test, train -> train + seeded val),
so one patient has the same pseudonymous key and split here and in chexpert.

No raw id reaches a record: source_path is pseudonymous as in chexpert (e.g.
"CheXpert-v1.0-small/train/<16 hex>/<16 hex>/<16 hex>.jpg"; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow_datasets as tfds

from radfm_jax.data.builders.chexpert.builder import LAYOUT as CHEXPERT_LAYOUT
from radfm_jax.data.builders.chexpert.builder import (
    PATIENT_KIND,
    SOURCE_FOLDERS,
    STUDY_KIND,
    read_images,
    split_of,
)
from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    ManualBuilder,
    PlannedExample,
    RadiographConfig,
    planned_radiograph,
)
from radfm_jax.data.builders.manual_folder import read_csv_rows, require_files
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, EMPTY_REPORT, SkipLog
from radfm_jax.data.builders.table_fields import apply_uncertain_policy
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.data.report_sections import report_target
from radfm_jax.errors import ConfigError

REPORT_CSV = ("df_chexpert_plus_240401.csv", "df_chexpert_plus_240401.csv.gz")
COL_IMAGE = "path_to_image"  # "train/patient00001/study1/view1_frontal.jpg"
COL_FINDINGS = "section_findings"
COL_IMPRESSION = "section_impression"
COL_REPORT = "report"  # the whole report, used when both sections are empty
COLUMNS = (COL_IMAGE, COL_FINDINGS, COL_IMPRESSION, COL_REPORT)
# Where CheXpert's tables and images may sit, relative to the manual folder.
CHEXPERT_ROOTS = (".", "CheXpert-v1.0", "CheXpert-v1.0-small")
NOT_IN_CHEXPERT = "not_in_chexpert_tables"

LAYOUT = f"""\
  <manual_dir>/
    df_chexpert_plus_240401.csv      path_to_image, section_findings, section_impression,
                                     report, deid_patient_id, split, ...
  and CheXpert's tables and images in the same folder or a CheXpert-v1.0(-small) subfolder:
{CHEXPERT_LAYOUT.replace("<manual_dir>/", "<manual_dir>/[CheXpert-v1.0/]")}"""


def report_text(row: dict[str, str], target: str) -> str:
    """The target text of a row, from its extracted sections (else its whole report)."""
    findings, impression = row[COL_FINDINGS].strip(), row[COL_IMPRESSION].strip()
    if findings or impression:
        sectioned = "\n".join(part for part in (
            f"FINDINGS: {findings}" if findings else "",
            f"IMPRESSION: {impression}" if impression else "") if part)
        return report_target(sectioned, target)
    return report_target(row[COL_REPORT], target)


@dataclasses.dataclass(eq=False)
class ChexpertPlusConfig(RadiographConfig):
    """views and val_fraction as in chexpert."""


class ChexpertPlus(ManualBuilder):
    """CheXpert Plus: CheXpert radiographs with report text and CheXpert labels."""

    name = "chexpert_plus"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [ChexpertPlusConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = SOURCE_FOLDERS

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        table = require_files(manual_dir, self.name, {"report table": REPORT_CSV}, LAYOUT)["report table"]
        root = next((manual_dir / r for r in CHEXPERT_ROOTS if (manual_dir / r / "train.csv").is_file()),
                    None)
        if root is None:
            raise ConfigError(f"{self.name}: no CheXpert train.csv in '{manual_dir}' or its "
                              f"{CHEXPERT_ROOTS[1:]} subfolders. Expected layout:\n{LAYOUT}")
        images = {image.relative_path: image for image in read_images(root, self.name, skips)}
        planned, seen = [], set()
        for line, row in enumerate(read_csv_rows(table, self.name, COLUMNS), start=2):
            relative = row[COL_IMAGE].strip()
            image = images.get(relative)
            if image is None:
                skips.skip(NOT_IN_CHEXPERT, f"{table.name}:{line}", f"{relative!r} is in no CheXpert table")
                continue
            if relative in seen:
                skips.skip(DUPLICATE_ROW, relative)
                continue
            seen.add(relative)
            if cfg.views and image.view not in cfg.views:
                skips.filter(f"view_{image.view}")
                continue
            text = report_text(row, cfg.text_target)
            if not text:
                skips.skip(EMPTY_REPORT, relative, f"no usable {cfg.text_target} text")
                continue
            planned.append(planned_radiograph(
                key=relative,
                split=split_of(image, cfg.split_seed, cfg.val_fraction),
                patient=ids(PATIENT_KIND, image.patient), study=ids(STUDY_KIND, image.study),
                image_path=root / relative,
                source_path=(root / relative).relative_to(manual_dir).as_posix(),
                report=text, labels=apply_uncertain_policy(image.labels, cfg.uncertain_policy),
                view=image.view, sex=image.sex, age=image.age,
            ))
        return planned
