"""CT-RATE's CSV tables (reports, abnormality labels, DICOM metadata), keyed by volume name.

The published file names and columns::

    dataset/radiology_text_reports/{train,validation}_reports.csv
        VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN
    dataset/multi_abnormality_labels/{train,valid}_predicted_labels.csv
        VolumeName, Medical material, Arterial wall calcification, ... (ABNORMALITIES), 0 / 1
    dataset/metadata/{train,validation}_metadata.csv
        VolumeName, RescaleSlope, RescaleIntercept, XYSpacing ("[0.75, 0.75]"), ZSpacing, ...

VolumeName is "train_1_a_1.nii.gz" (some copies drop the extension); keys here never carry it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from radfm_jax.data.builders.manual_folder import read_csv_rows, require_files
from radfm_jax.errors import ConfigError

# The 18 abnormality columns of the label CSVs, in their published order.
ABNORMALITIES: tuple[str, ...] = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
# The same names in snake_case, the order of every label vector the builder writes.
LABEL_NAMES: tuple[str, ...] = tuple(name.lower().replace(" ", "_") for name in ABNORMALITIES)

# The official pools and where each one's tables are in the manual folder.
POOLS: tuple[str, ...] = ("train", "valid")
TABLES: dict[str, dict[str, str]] = {
    "train": {"reports": "dataset/radiology_text_reports/train_reports.csv",
              "labels": "dataset/multi_abnormality_labels/train_predicted_labels.csv",
              "metadata": "dataset/metadata/train_metadata.csv"},
    "valid": {"reports": "dataset/radiology_text_reports/validation_reports.csv",
              "labels": "dataset/multi_abnormality_labels/valid_predicted_labels.csv",
              "metadata": "dataset/metadata/validation_metadata.csv"},
}

# The columns read (the reports CSV also has ClinicalInformation_EN and Technique_EN).
REPORT_COLUMNS = ("VolumeName", "Findings_EN", "Impressions_EN")
METADATA_COLUMNS = ("VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def volume_key(name: str) -> str:
    """"train_1_a_1.nii.gz" / "train_1_a_1.nii" / "train_1_a_1" -> "train_1_a_1"."""
    name = Path(name.strip()).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclasses.dataclass(frozen=True)
class Report:
    findings: str
    impression: str


@dataclasses.dataclass(frozen=True)
class ScanMetadata:
    rescale_slope: float
    rescale_intercept: float
    spacing: tuple[float, float, float]  # mm along the NIfTI axes i, j, k: (XY, XY, Z)


@dataclasses.dataclass(frozen=True)
class PoolTables:
    reports: dict[str, Report]
    labels: dict[str, tuple[int, ...]]  # 0 / 1 per ABNORMALITIES
    metadata: dict[str, ScanMetadata]


def _first_number(text: str, column: str, path: Path) -> float:
    match = _NUMBER.search(text)
    if match is None:
        raise ConfigError(f"'{path}': a {column} value {text!r} holds no number; is it CT-RATE's "
                          "original file?")
    return float(match.group())


def read_pool(manual_dir: Path, pool: str, dataset: str, layout: str) -> PoolTables:
    """The three tables of one official pool ("train" or "valid"); a ConfigError names every
    missing file, a missing column or a label that is not 0 / 1."""
    paths = require_files(manual_dir, dataset, {f"{pool} {role}": [rel] for role, rel
                                                 in TABLES[pool].items()}, layout)
    reports = {
        volume_key(r["VolumeName"]): Report(r["Findings_EN"] or "", r["Impressions_EN"] or "")
        for r in read_csv_rows(paths[f"{pool} reports"], dataset, REPORT_COLUMNS)
    }
    labels_path = paths[f"{pool} labels"]
    labels = {}
    for row in read_csv_rows(labels_path, dataset, ("VolumeName", *ABNORMALITIES)):
        try:
            values = tuple(int(float(row[c])) for c in ABNORMALITIES)
        except ValueError:
            values = ()
        if not values or any(v not in (0, 1) for v in values):
            raise ConfigError(f"{dataset}: '{labels_path}': the labels of {row['VolumeName']} are "
                              f"not all 0 / 1: {[row[c] for c in ABNORMALITIES]}")
        labels[volume_key(row["VolumeName"])] = values
    metadata_path = paths[f"{pool} metadata"]
    metadata = {}
    for row in read_csv_rows(metadata_path, dataset, METADATA_COLUMNS):
        number = lambda column: _first_number(row[column], column, metadata_path)  # noqa: E731
        xy = number("XYSpacing")
        metadata[volume_key(row["VolumeName"])] = ScanMetadata(
            rescale_slope=number("RescaleSlope"), rescale_intercept=number("RescaleIntercept"),
            spacing=(xy, xy, number("ZSpacing")))
    return PoolTables(reports=reports, labels=labels, metadata=metadata)
