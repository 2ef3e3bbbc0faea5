"""CT-RATE (chest CT volumes with radiology reports, Hamamci et al.) from the user's copy of the
Hugging Face release: NIfTI volumes -> Hounsfield units (see hounsfield.py for the two releases)
-> PreprocessSpec.apply_volume -> uint8 (D, H, W, C), with the report and the 18 published
abnormality labels (1 / 0, text-classifier predictions).

Splits: the official pools are kept apart. The official `valid` pool becomes `test` (the
held-out set CT-CLIP and its successors report on), and a seeded patient-level `val` of
val_fraction of the patients is carved from the official `train` pool for model selection.
The patient is the `train_<P>` / `valid_<P>` folder (numbered separately per pool), stored
only as a salted pseudonym; every scan and reconstruction of a patient stays in one split.

No raw id reaches a record: a volume's folders and name carry its patient and scan
(train_1/train_1_a/train_1_a_1.nii.gz), so source_path keeps only the pool's folders,
"dataset/train_fixed/<16 hex>/<16 hex>/<16 hex>.nii.gz" (each replaced by its pseudonym;
pseudonyms.SourceFiles maps it back to the file with the key).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.common import (
    PSEUDONYMOUS_SOURCE_NOTE,
    ManualBuilder,
    ManualBuilderConfig,
    PlannedExample,
)
from radfm_jax.data.builders.ct_rate.hounsfield import (
    HU_MODES,
    HounsfieldUndecided,
    to_hounsfield,
    with_spacing,
)
from radfm_jax.data.builders.ct_rate.tables import (
    LABEL_NAMES,
    POOLS,
    ScanMetadata,
    read_pool,
    volume_key,
)
from radfm_jax.data.builders.features import VOLUME_BYTES_NOTE, volume_feature
from radfm_jax.data.builders.manual_folder import require_files
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.builders.pseudonyms import Pseudonymizer
from radfm_jax.data.builders.skips import EMPTY_REPORT, SkipLog
from radfm_jax.data.image_files import ImageReadError
from radfm_jax.data.model_inputs import DEFAULT_CT_WINDOWS
from radfm_jax.data.nifti import NiftiReadError, read_nifti
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.report_sections import report_target
from radfm_jax.data.windows import WINDOW_PRESETS
from radfm_jax.errors import ConfigError

# Volume folders of each pool, newest release first: the re-released volumes ("<pool>_fixed",
# already in HU) and the first release ("<pool>", raw values). A volume present in both is
# taken from the newer folder.
VOLUME_FOLDERS: dict[str, tuple[str, ...]] = {
    pool: (f"dataset/{pool}_fixed", f"dataset/{pool}") for pool in POOLS}
VOLUME_NAME = re.compile(r"^(?P<pool>train|valid)_(?P<patient>\d+)_(?P<scan>[a-z]+)_(?P<recon>\d+)$")
# A CT-CLIP-sized field of view: 480 x 0.75 mm in-plane and 240 x 1.5 mm along z = 360 mm; the
# default spacing of a size is the one that keeps it.
FIELD_OF_VIEW_MM = 360.0
DEFAULT_SIZE = (32, 64, 64)  # (D, H, W)
DEFAULT_WINDOWS = DEFAULT_CT_WINDOWS
# Skip reasons of this builder.
NO_REPORT, NO_LABELS, NO_METADATA = "no_report", "no_labels", "no_metadata"
UNRECOGNISED_NAME = "unrecognised_name"
OLDER_RELEASE_COPY = "older_release_copy"  # filter reason: a first-release twin of a "_fixed" file
PATIENT_KIND, STUDY_KIND = "ct_rate-patient", "ct_rate-study"

LAYOUT = """\
  <manual_dir>/dataset/
    train/train_1/train_1_a/train_1_a_1.nii.gz      (or train_fixed/..., the HU re-release)
    valid/valid_1/valid_1_a/valid_1_a_1.nii.gz      (or valid_fixed/...)
    radiology_text_reports/train_reports.csv, validation_reports.csv
                        VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN
    multi_abnormality_labels/train_predicted_labels.csv, valid_predicted_labels.csv
                        VolumeName + the 18 abnormality columns (0 / 1)
    metadata/train_metadata.csv, validation_metadata.csv
                        VolumeName, RescaleSlope, RescaleIntercept, XYSpacing, ZSpacing, ..."""


def volume_spec(size: tuple[int, int, int] = DEFAULT_SIZE,
                windows: tuple[Any, ...] = DEFAULT_WINDOWS) -> PreprocessSpec:
    """RAS volumes resampled to the spacing that fits FIELD_OF_VIEW_MM into size (D, H, W)."""
    depth, height, width = size
    spacing = (FIELD_OF_VIEW_MM / width, FIELD_OF_VIEW_MM / height, FIELD_OF_VIEW_MM / depth)
    return PreprocessSpec(kind="volume3d", size=size, windows=windows, orientation="RAS",
                          spacing=spacing)


def parse_window(text: str) -> str | tuple[float, float]:
    """A data.windows entry: a preset name ("lung") or "center,width" in HU ("-600,1500")."""
    if text in WINDOW_PRESETS:
        return text
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"data.windows entry {text!r} is neither a preset name "
                          f"({', '.join(WINDOW_PRESETS)}) nor 'center,width' in HU, e.g. "
                          "'-600,1500'") from None
    return center, width


@dataclasses.dataclass(eq=False)
class CtRateConfig(ManualBuilderConfig):
    """hu: "auto" | "stored" | "rescale" (hounsfield.py); val_fraction: patients of the
    official train pool held out as val."""

    spec: PreprocessSpec = dataclasses.field(default_factory=volume_spec)
    hu: str = "auto"
    val_fraction: float = 0.05

    def __post_init__(self):
        if self.hu not in HU_MODES:
            raise ValueError(f"hu must be one of {HU_MODES}, got {self.hu!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.spec.kind != "volume3d":
            raise ValueError(f"CT-RATE needs a volume3d preprocessing spec, got {self.spec.kind}")
        super().__post_init__()

    def _name_parts(self) -> list[str]:
        # The labels are 0 / 1: uncertain_policy changes nothing and is left out of the name.
        return [f"p{self.spec.fingerprint()}", f"text-{self.text_target}", f"hu-{self.hu}",
                f"seed{self.split_seed}", f"val{self.val_fraction:g}"]


@dataclasses.dataclass(frozen=True)
class PlannedVolume(PlannedExample):
    """A planned record with the scan's metadata row, needed to read its volume."""

    metadata: ScanMetadata


def find_volumes(manual_dir: Path, skips: SkipLog) -> dict[str, dict[str, Path]]:
    """{pool: {volume key: path}} over both releases' folders (the newer wins a duplicate)."""
    require_files(manual_dir, "ct_rate", {f"{pool} volumes": folders
                                          for pool, folders in VOLUME_FOLDERS.items()}, LAYOUT)
    found: dict[str, dict[str, Path]] = {pool: {} for pool in POOLS}
    for pool, folders in VOLUME_FOLDERS.items():
        for folder in folders:
            for path in sorted((manual_dir / folder).glob("*/*/*.nii*")):
                key = volume_key(path.name)
                where = path.relative_to(manual_dir).as_posix()
                match = VOLUME_NAME.match(key)
                if match is None or match["pool"] != pool:
                    skips.skip(UNRECOGNISED_NAME, where, f"not a {pool}_<patient>_<scan>_<n> volume")
                elif key in found[pool]:  # a good file, just superseded: counted, not logged
                    skips.filter(OLDER_RELEASE_COPY)
                else:
                    found[pool][key] = path
    return found


class CtRate(ManualBuilder):
    """CT-RATE chest CT volumes with reports and 18 abnormality labels."""

    name = "ct_rate"
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": PSEUDONYMOUS_SOURCE_NOTE, "1.2.0": VOLUME_BYTES_NOTE + " spacing (mm along D, H, W) in every record."}
    BUILDER_CONFIGS = [CtRateConfig()]
    LABEL_NAMES = LABEL_NAMES
    LAYOUT = LAYOUT
    SOURCE_FOLDERS = tuple(dict.fromkeys(part for folders in VOLUME_FOLDERS.values()
                                         for folder in folders for part in folder.split("/")))

    @classmethod
    def config_for(cls, data_cfg: DataConfig) -> CtRateConfig:
        """Volumes of (image_size / 2, image_size, image_size) voxels over FIELD_OF_VIEW_MM;
        data.windows or lung + mediastinum. data.resize does not apply (the spacing is fixed,
        so each axis is centre-cropped or padded) and hu stays "auto"."""
        size = (max(1, data_cfg.image_size // 2), data_cfg.image_size, data_cfg.image_size)
        windows = tuple(parse_window(w) for w in data_cfg.windows) or DEFAULT_WINDOWS
        return CtRateConfig(spec=volume_spec(size, windows), text_target=data_cfg.text_target,
                            split_seed=data_cfg.split_seed)

    def _features(self) -> tfds.features.FeaturesDict:
        spec = self.builder_config.spec
        return tfds.features.FeaturesDict({
            "volume": volume_feature(spec.size, spec.channels),
            "report": tfds.features.Text(),
            "labels": tfds.features.Tensor(shape=(len(LABEL_NAMES),), dtype=np.int8),
            "patient_id": tfds.features.Text(),
            "study_id": tfds.features.Text(),
            "hu": tfds.features.Text(),  # how the volume became HU: "stored" or "rescale"
            "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            "source_path": tfds.features.Text(),
        })

    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        cfg = self.builder_config
        volumes = find_volumes(manual_dir, skips)
        planned = []
        for pool in POOLS:
            tables = read_pool(manual_dir, pool, self.name, LAYOUT)
            for key, path in volumes[pool].items():
                where = path.relative_to(manual_dir).as_posix()
                missing = [reason for reason, table in ((NO_REPORT, tables.reports),
                                                        (NO_LABELS, tables.labels),
                                                        (NO_METADATA, tables.metadata))
                           if key not in table]
                if missing:
                    skips.skip(missing[0], where, f"{key} is not in the {pool} tables")
                    continue
                report = tables.reports[key]
                text = report_target(f"FINDINGS: {report.findings}\nIMPRESSION: {report.impression}",
                                     cfg.text_target)
                if not text:
                    skips.skip(EMPTY_REPORT, where, f"no usable {cfg.text_target} text")
                    continue
                match = VOLUME_NAME.match(key)
                patient_raw = f"{pool}_{match['patient']}"
                if pool == "valid":
                    split = "test"
                else:
                    split = seeded_split(f"ct_rate/{patient_raw}", cfg.split_seed,
                                         {"train": 1.0 - cfg.val_fraction, "val": cfg.val_fraction})
                patient = ids(PATIENT_KIND, patient_raw)
                planned.append(PlannedVolume(
                    key=key, split=split, patient=patient, image_path=path, source_path=where,
                    metadata=tables.metadata[key],
                    fields={
                        "report": text, "labels": np.asarray(tables.labels[key], dtype=np.int8),
                        "patient_id": patient,
                        "study_id": ids(STUDY_KIND, f"{patient_raw}_{match['scan']}"),
                    },
                ))
        return planned

    def _load(self, example: PlannedVolume) -> dict[str, Any]:
        volume = with_spacing(read_nifti(example.image_path), example.metadata)
        low, high = float(volume.values.min()), float(volume.values.max())
        if low == high:  # an empty or failed export: windowing would give a blank, labelled record
            raise NiftiReadError(example.image_path, f"every voxel is {low:g}: an empty or failed export; "
                                                     "export the scan again")
        mode, hu_volume = to_hounsfield(volume, example.metadata, self.builder_config.hu)
        spec = self.builder_config.spec
        # mm along the stored (D, H, W) axes (the spec's (i, j, k) spacing reversed), as
        # synthetic_ct records it, so data.volume_spacing can resample either.
        return {"volume": spec.apply_volume(hu_volume), "hu": mode,
                "spacing": np.asarray(spec.spacing[::-1], np.float32)}

    def _try_load(self, example: PlannedVolume) -> dict[str, Any] | ImageReadError:
        # The base class counts ImageReadErrors as missing / unreadable files and skips them.
        try:
            return self._load(example)
        except NiftiReadError as err:
            return ImageReadError(err.path, err.reason)
        except HounsfieldUndecided as err:
            return ImageReadError(example.image_path, f"hu=auto cannot tell raw from HU values: {err}")
