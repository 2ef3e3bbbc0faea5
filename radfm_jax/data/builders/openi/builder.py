"""Open-i (IU X-ray, Indiana University chest radiographs) from the user's copy: every image
named by a report's <parentImage>, with the report's text, CheXpert-style labels from the
rule-based report labeler (the data set ships none) and its MeSH terms as text.

Views: NLM's release records none. With the Kaggle copy's indiana_projections.csv in the manual
folder each image's view is FRONTAL or LATERAL (openi/views.py) and the config's views filter
applies (frontal only by default); without it every view is "unknown" and every image is kept.

Splits: there is no official one. Open-i's reports are de-identified per study with no patient
identifier, and the data set was collected as one study per patient, so each report is taken
as one patient: a seeded, patient-level (= report-level) split into train / val / test; all
images of a report stay together.

No raw id reaches a record: an image's name carries its report's uid (CXR<uid>_...), so
source_path keeps only the image folder, "NLMCXR_png/<16 hex>.png" (the file name replaced by its
pseudonym; pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import tensorflow_datasets as tfds

from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    FractionSplitConfig,
    ManualBuilder,
    PlannedExample,
    planned_radiograph,
    views_name,
)
from radfm_jax.data.builders.features import manual_cxr_features
from radfm_jax.data.builders.manual_folder import find_first, require_files
from radfm_jax.data.builders.openi.reports import OpenIReportError, read_report
from radfm_jax.data.builders.openi.views import (
    OPENI_VIEWS,
    PROJECTIONS_CSV,
    UNKNOWN_VIEW,
    image_key,
    read_projections,
)
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import DUPLICATE_ROW, EMPTY_REPORT, UNPARSEABLE_ROW, SkipLog
from radfm_jax.data.builders.table_fields import apply_uncertain_policy
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.data.labeler import label_vector
from radfm_jax.data.report_sections import report_target

log = logging.getLogger(__name__)

REPORTS_FOLDER = "ecgen-radiology"
IMAGE_FOLDERS = ("NLMCXR_png", "images")
NO_IMAGES = "no_images"  # skip reason: a report whose XML names no image
PATIENT_KIND = "openi-patient"
STUDY_KIND = "openi-study"

LAYOUT = """\
  <manual_dir>/
    ecgen-radiology/1.xml ... 3999.xml     one report per study (NLMCXR_reports.tgz)
    NLMCXR_png/CXR1_1_IM-0001-3001.png     the images its <parentImage id=...> names
                                           (NLMCXR_png.tgz; images/ is accepted too)
    indiana_projections.csv                optional, from the Kaggle copy: filename, projection
                                           (Frontal / Lateral); without it views are unknown"""


@dataclasses.dataclass(eq=False)
class OpenIConfig(FractionSplitConfig):
    """val_fraction / test_fraction: the share of reports (= patients) in val and test; views:
    the views kept (FRONTAL, LATERAL; empty = all), which needs the projections table."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    views: tuple[str, ...] = ("FRONTAL",)

    def __post_init__(self):
        self.views = tuple(v.upper() for v in self.views)
        if not set(self.views) <= set(OPENI_VIEWS):
            raise ValueError(f"Open-i's views are {OPENI_VIEWS} (it records no PA / AP); "
                             f"got views {self.views}")
        super().__post_init__()

    def _name_parts(self) -> list[str]:
        return [*super()._name_parts(), views_name(self.views)]


class OpenI(ManualBuilder):
    """Open-i / IU X-ray radiographs with reports, labeler-derived CheXpert labels and MeSH terms."""

    name = "openi"
    # A new version whenever records change (1.1.0 views, 1.2.0 labels, 1.3.0 source_path), so
    # no old build is reused.
    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {"1.0.0": "First release.",
                     "1.1.0": "view from indiana_projections.csv (else 'unknown'); views filter.",
                     "1.2.0": "labels from the labeler that reads inline headers, negation scope, history.",
                     "1.3.0": PSEUDONYMOUS_SOURCE_NOTE}
    BUILDER_CONFIGS = [OpenIConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = IMAGE_FOLDERS

    def _features(self) -> tfds.features.FeaturesDict:
        features = dict(manual_cxr_features(self.builder_config.spec.size[0], self.LABEL_NAMES))
        features["mesh"] = tfds.features.Text()  # "; "-separated <major> then <automatic> terms
        return tfds.features.FeaturesDict(features)

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        folders = require_files(manual_dir, self.name,
                                {"reports": [REPORTS_FOLDER], "images": IMAGE_FOLDERS}, LAYOUT)
        reports_dir, images_dir = folders["reports"], folders["images"]
        views = self._read_views(manual_dir, skips)
        fractions = cfg.fractions()
        planned, seen = [], set()
        for path in sorted(reports_dir.glob("*.xml")):
            where = path.relative_to(manual_dir).as_posix()
            try:
                report = read_report(path)
            except OpenIReportError as err:
                skips.skip(UNPARSEABLE_ROW, where, str(err))
                continue
            if not report.image_ids:
                skips.skip(NO_IMAGES, where, "the report names no <parentImage>")
                continue
            full_text = report.as_report_text()
            text = report_target(full_text, cfg.text_target)
            if not text:
                skips.skip(EMPTY_REPORT, where, f"no usable {cfg.text_target} text")
                continue
            # The labeler reads the findings and impression, whatever text target is trained on.
            labels = apply_uncertain_policy(label_vector(full_text), cfg.uncertain_policy)
            patient = ids(PATIENT_KIND, report.report_id)
            split = seeded_split(f"openi/{report.report_id}", cfg.split_seed, fractions)
            for image_id in report.image_ids:
                if image_id in seen:
                    skips.skip(DUPLICATE_ROW, f"{where}:{image_id}", "image named by another report")
                    continue
                seen.add(image_id)
                view = UNKNOWN_VIEW if views is None else views.get(image_key(image_id), UNKNOWN_VIEW)
                if views is not None and cfg.views and view not in cfg.views:
                    skips.filter(f"view_{view}")
                    continue
                image_path = images_dir / f"{image_id}.png"
                # Open-i records no demographics.
                planned.append(planned_radiograph(
                    key=image_id, split=split, patient=patient,
                    study=ids(STUDY_KIND, report.report_id), image_path=image_path,
                    source_path=image_path.relative_to(manual_dir).as_posix(),
                    report=text, labels=labels, view=view, mesh=report.mesh_text(),
                ))
        return planned

    def _read_views(self, manual_dir: Path, skips: SkipLog) -> dict[str, str] | None:
        """{image_key: view} from the projections table; None when the copy has none. Which it
        was is recorded in the metadata: both build into the same folder (its name cannot
        depend on the manual folder, which a built data set no longer needs)."""
        views = self.builder_config.views
        table = find_first(manual_dir, [PROJECTIONS_CSV])
        self.info.metadata["view_source"] = PROJECTIONS_CSV if table else "none"
        if table is None:
            unfiltered = f"; the views filter {views} cannot apply, so every image is kept" if views else ""
            log.warning("%s: no %s in '%s': every view is '%s'%s. Add the Kaggle copy's table to the "
                        "folder (and delete this build) to record views.", self.name, PROJECTIONS_CSV,
                        manual_dir, UNKNOWN_VIEW, unfiltered)
            return None
        return read_projections(table, self.name, skips)
