"""The shared base of the builders that read a user's local copy of a data set.

A builder subclasses `ManualBuilder` and writes one method, `_plan`, that reads the data set's
CSVs and returns a `PlannedExample` per record (split, pseudonymous patient key, image path and
every other feature; `planned_radiograph` makes the chest X-ray ones). The base class then,
before anything is written:
  - checks the manual folder (a missing folder or file is a ConfigError naming it and the layout),
  - refuses splits that share a patient (ConfigError with the count and example keys),
  - refuses a split with no examples;
and while writing reads images in threads, counts and skips unreadable ones, refuses a split that
ends up empty, and stores the build summary, the preprocessing spec and the label names in the
data set's metadata (`builder.info.metadata`); every skipped record goes to skipped_records.log in
the build's folder, with one warning per skip reason.

No record holds a raw identifier. `patient_id` / `study_id` are keyed pseudonyms (the builder's
`ids`), the stored `source_path` is the file's path with every part after the builder's
SOURCE_FOLDERS replaced by its pseudonym (pseudonyms.pseudonymous_source_path; the key maps it
back: pseudonyms.SourceFiles), and records are ordered by a keyed pseudonym of their key, so
their order cannot be recomputed from the data set's public tables either. The key is read (or
created) outside the data folder: the builder's `pseudonym_key` argument (data.pseudonym_key),
else $RADFM_PSEUDONYM_KEY, else ~/.config/radfm_jax/pseudonym_key (see pseudonyms.py).
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.features import manual_cxr_features
from radfm_jax.data.builders.patient_splits import SPLITS, check_disjoint_patients
from radfm_jax.data.builders.pseudonyms import (
    Pseudonymizer,
    load_or_create_key,
    pseudonymous_source_path,
)
from radfm_jax.data.builders.registered_configs import RegisteredConfigs
from radfm_jax.data.builders.skips import MISSING_FILE, UNREADABLE_IMAGE, SkipLog
from radfm_jax.data.image_files import ImageReadError, read_image
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

_READ_CHUNK = 64  # images decoded together by the thread pool
RECORD_KEY_KIND = "record-key"  # the Pseudonymizer kind of the keys records are ordered by
# The release note of the builders whose records changed when ids left source_path (issue 17).
PSEUDONYMOUS_SOURCE_NOTE = ("source_path holds no raw id (pseudonymous folders and file name); "
                            "records ordered by a keyed pseudonym; the key is kept outside the "
                            "data folder.")


def views_name(views: tuple[str, ...]) -> str:
    """The config-name part for a view filter (empty = every view)."""
    return "views-" + ("+".join(views) if views else "all")


@dataclasses.dataclass(frozen=True)
class PlannedExample:
    """One record before its image is read. `fields` holds every feature but the image."""

    key: str  # unique within the data set; its keyed pseudonym becomes the TFDS example key
    split: str
    patient: str  # pseudonymous patient key (checked for leakage across splits)
    image_path: Path
    # image_path relative to the manual folder (POSIX). Raw: it names skipped files in the
    # build's logs; the record stores its pseudonymous form (pseudonymous_source_path).
    source_path: str
    fields: dict[str, Any]


def planned_radiograph(*, key: str, split: str, patient: str, study: str, image_path: Path,
                       source_path: str, report: str, labels: np.ndarray, view: str = "",
                       sex: str = "", age: int = -1, **extra_fields: Any) -> PlannedExample:
    """A chest X-ray record (manual_cxr_features, plus a builder's `extra_fields`). `patient`
    is both the key checked for leakage and the stored patient_id; a data set that records no
    view, sex or age keeps the defaults ("", "", -1)."""
    return PlannedExample(
        key=key, split=split, patient=patient, image_path=image_path, source_path=source_path,
        fields={"report": report, "labels": labels, "patient_id": patient, "study_id": study,
                "view": view, "sex": sex, "age": np.int32(age), **extra_fields})


@dataclasses.dataclass(eq=False)
class ManualBuilderConfig(tfds.core.BuilderConfig):
    """Preprocessing and labelling options; the name (and so the folder) is derived from them,
    so different options never share a folder. Subclasses add options via `_name_parts`."""

    name: str = dataclasses.field(init=False, default="")
    spec: PreprocessSpec = dataclasses.field(
        default_factory=lambda: PreprocessSpec(kind="image2d", size=(224, 224)))
    text_target: str = "both"
    uncertain_policy: str = "ignore"
    split_seed: int = 0

    def __post_init__(self):
        self.spec.validate()
        if self.uncertain_policy not in ("ignore", "ones", "zeros"):
            raise ValueError(f"uncertain_policy must be ignore, ones or zeros, got {self.uncertain_policy!r}")
        self.name = "-".join(self._name_parts())
        self.description = f"options {self.name} ({self.spec.to_metadata()})"

    def _name_parts(self) -> list[str]:
        return [f"p{self.spec.fingerprint()}", f"text-{self.text_target}",
                f"u-{self.uncertain_policy}", f"seed{self.split_seed}"]


@dataclasses.dataclass(eq=False)
class FractionSplitConfig(ManualBuilderConfig):
    """Data sets without an official split: val_fraction / test_fraction of the patients go to
    val / test (by a hash of (split_seed, patient): patient_splits.seeded_split)."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self):
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"val_fraction ({self.val_fraction}) and test_fraction "
                             f"({self.test_fraction}) must be in (0, 1) and sum to less than 1")
        super().__post_init__()

    def _name_parts(self) -> list[str]:
        return [*super()._name_parts(), f"val{self.val_fraction:g}-test{self.test_fraction:g}"]

    def fractions(self) -> dict[str, float]:
        return {"train": 1.0 - self.val_fraction - self.test_fraction, "val": self.val_fraction,
                "test": self.test_fraction}


@dataclasses.dataclass(eq=False)
class RadiographConfig(ManualBuilderConfig):
    """Options of radiograph sets whose val split is carved from the official train patients:
    the views kept (empty = all) and the fraction of train patients held out as val."""

    views: tuple[str, ...] = ("PA", "AP")
    val_fraction: float = 0.05

    def __post_init__(self):
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        self.views = tuple(v.upper() for v in self.views)
        super().__post_init__()

    def _name_parts(self) -> list[str]:
        return [*super()._name_parts(), views_name(self.views), f"val{self.val_fraction:g}"]


class ManualBuilder(RegisteredConfigs, tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of builders that read a user's local copy (TFDS manual_dir) of a published data set."""

    # Every data set is at its first release. The version is part of the prepared folder's path
    # (<data_dir>/<name>/<config>/<version>): a builder whose records change overrides both.
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    LABEL_NAMES: tuple[str, ...] = ()
    LAYOUT: str = ""  # the expected folder layout, shown in every manual-folder error
    # Leading folders of source paths that are the release's own layout and identify no one
    # ("files", "stage_2_train_images"): kept in the stored source_path; every later part of
    # the path becomes its pseudonym (pseudonyms.pseudonymous_source_path).
    SOURCE_FOLDERS: tuple[str, ...] = ()
    # Nothing is downloaded, so there is no checksum file to look up (see synthetic_cxr).
    code_path = None

    def __init__(self, *, pseudonym_key: str | os.PathLike = "", **kwargs: Any):
        """`pseudonym_key`: the key file (data.pseudonym_key); "" = $RADFM_PSEUDONYM_KEY, else
        the default under the user's config folder. Read only when the data set is built."""
        super().__init__(**kwargs)
        self._pseudonym_key = os.fspath(pseudonym_key)
        self._original_state["pseudonym_key"] = self._pseudonym_key  # TFDS re-creates from it

    def __init_subclass__(cls, skip_registration: bool = True, **kwargs):
        # Builders are chosen through data/builders/registry.py, not TFDS's global registry
        # (where names like "chexpert" already belong to TFDS's own catalogue).
        super().__init_subclass__(skip_registration=skip_registration, **kwargs)
        cls.MANUAL_DOWNLOAD_INSTRUCTIONS = (
            f"Place your copy of the data set in data.manual_dir, laid out as:\n{cls.LAYOUT}")

    @classmethod
    def config_for(cls, data_cfg: DataConfig) -> ManualBuilderConfig:
        """The build a DataConfig asks for; options DataConfig does not name keep their defaults."""
        if data_cfg.windows:
            raise ConfigError(f"{cls.name}: data.windows is for CT volumes; radiographs are stored "
                              "as the display images they are, so leave data.windows empty")
        spec = PreprocessSpec(kind="image2d", size=(data_cfg.image_size,) * 2, resize=data_cfg.resize)
        return type(cls.BUILDER_CONFIGS[0])(
            spec=spec, text_target=data_cfg.text_target,
            uncertain_policy=data_cfg.uncertain_policy, split_seed=data_cfg.split_seed)

    # -- what subclasses write ----------------------------------------------------------------

    @abc.abstractmethod
    def _plan(self, manual_dir: Path, ids: Pseudonymizer, skips: SkipLog) -> list[PlannedExample]:
        """Every record to write, from the data set's tables; skips bad rows through `skips`."""

    def _features(self) -> tfds.features.FeaturesDict:
        return manual_cxr_features(self.builder_config.spec.size[0], self.LABEL_NAMES)

    def _load(self, example: PlannedExample) -> dict[str, Any]:
        """The features read from the image file; raises ImageReadError for a bad file."""
        return {"image": self.builder_config.spec.apply_image(read_image(example.image_path))}

    # -- TFDS ---------------------------------------------------------------------------------

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=self._features(),
            metadata=tfds.core.MetadataDict(
                preprocess=cfg.spec.to_metadata(), label_names=list(self.LABEL_NAMES)),
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        try:
            manual_dir = Path(dl_manager.manual_dir)
        except AssertionError:  # TFDS's word for a folder that is not set, missing or empty
            raise ConfigError(
                f"{self.name}: the manual folder is not set, missing or empty; set "
                f"--set data.manual_dir=/path/to/your/copy laid out as:\n{self.LAYOUT}") from None
        skips = SkipLog(self.name)
        ids = Pseudonymizer(load_or_create_key(self._data_dir_root, self._pseudonym_key))
        planned = self._plan(manual_dir, ids, skips)
        by_split: dict[str, list[PlannedExample]] = {split: [] for split in SPLITS}
        for example in planned:
            by_split[example.split].append(example)
        empty = [split for split, examples in by_split.items() if not examples]
        if empty:
            details = self._report_skips(skips, failed=True)
            raise ConfigError(
                f"{self.name}: split(s) {empty} would be empty; refusing to write an incomplete "
                f"data set. Check the manual folder's tables (records read: "
                f"{len(planned)}; skipped {dict(skips.skipped)}; filtered out {dict(skips.filtered)})"
                + (f"; the skipped records are listed in {details}" if details else ""))
        check_disjoint_patients({s: (e.patient for e in ex) for s, ex in by_split.items()}, self.name)
        pending = set(by_split)  # splits not yet written; skips are reported after the last
        return {split: self._generate_examples(split, examples, skips, pending, ids)
                for split, examples in by_split.items()}

    def _generate_examples(self, split: str, examples: list[PlannedExample], skips: SkipLog,
                           pending: set[str], ids: Pseudonymizer) -> Iterator[tuple[str, dict[str, Any]]]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(examples), _READ_CHUNK):
                chunk = examples[start:start + _READ_CHUNK]
                for example, loaded in zip(chunk, pool.map(self._try_load, chunk)):
                    if isinstance(loaded, ImageReadError):
                        reason = MISSING_FILE if loaded.reason == "no such file" else UNREADABLE_IMAGE
                        skips.skip(reason, example.source_path, loaded.reason)
                        continue
                    skips.wrote(split)
                    source = pseudonymous_source_path(example.source_path, ids, self.SOURCE_FOLDERS)
                    yield ids(RECORD_KEY_KIND, example.key), {**example.fields, **loaded,
                                                              "source_path": source}
        # Stored with the data set (TFDS writes the metadata after the last split).
        self.info.metadata["build_summary"] = skips.summary()
        pending.discard(split)
        if not skips.written[split]:
            details = self._report_skips(skips, failed=True)
            raise ConfigError(f"{skips.describe()}. Every record of split '{split}' was skipped; "
                              f"refusing to write an empty split. Check the files listed in {details}.")
        if not pending:
            self._report_skips(skips, failed=False)
        log.info("%s", skips.describe())

    def _report_skips(self, skips: SkipLog, *, failed: bool) -> Path | None:
        """The skipped records' list, written into the build's folder; TFDS deletes the folder
        of a build that fails, so a failed build leaves it beside that folder instead."""
        folder = Path(self.data_dir)
        return skips.report(folder.parent if failed else folder)

    def _try_load(self, example: PlannedExample) -> dict[str, Any] | ImageReadError:
        try:
            return self._load(example)
        except ImageReadError as err:
            return err
