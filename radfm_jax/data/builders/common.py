"""What every builder of a user's local data set shares.

A builder subclasses `ManualBuilder` and writes one method, `_plan`, that reads the data set's
CSVs and returns a `PlannedExample` per record (split, pseudonymous patient key, image path and
every other feature). The base class then, before anything is written:
  - checks the manual folder (a missing folder or file is a ConfigError naming it and the layout),
  - refuses splits that share a patient (ConfigError with the count and example keys),
  - refuses a split with no examples;
and while writing reads images in threads, counts and skips unreadable ones, refuses a split that
ends up empty, and stores the build summary, the preprocessing spec and the label names in the
data set's metadata (`builder.info.metadata`).
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import csv
import dataclasses
import gzip
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.features import manual_cxr_features
from radfm_jax.data.findings import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN
from radfm_jax.data.image_files import ImageReadError, read_image
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.privacy import pseudonymous_id
from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SALT_FILENAME = ".radfm_pseudonym_salt"
# Skip reasons used across builders (a builder may add its own).
MISSING_FILE = "missing_file"
UNREADABLE_IMAGE = "unreadable_image"
EMPTY_REPORT = "empty_report"
UNPARSEABLE_ROW = "unparseable_row"
DUPLICATE_ROW = "duplicate_row"
_EXAMPLES_PER_REASON = 5
_READ_CHUNK = 64  # images decoded together by the thread pool


# ---------------------------------------------------------------------------------------------
# The manual folder


def require_manual_dir(manual_dir: str | os.PathLike | None, dataset: str, layout: str) -> Path:
    """The user's copy of the data set; a ConfigError naming the layout when it is not there."""
    if not manual_dir:
        raise ConfigError(
            f"{dataset}: no manual folder given; set --set data.manual_dir=/path/to/your/copy "
            f"laid out as:\n{layout}")
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{dataset}: manual folder '{path}' does not exist or is not a folder; "
                          f"expected layout:\n{layout}")
    return path


def find_first(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first of the relative paths `candidates` that exists under root."""
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    return None


def require_files(root: Path, dataset: str, required: Mapping[str, Sequence[str]],
                  layout: str) -> dict[str, Path]:
    """{role: path} for each role's first existing candidate; one ConfigError naming every
    role that has none."""
    found = {role: find_first(root, names) for role, names in required.items()}
    missing = [" or ".join(required[role]) for role, path in found.items() if path is None]
    if missing:
        raise ConfigError(f"{dataset}: missing in manual folder '{root}': {'; '.join(missing)}. "
                          f"Expected layout:\n{layout}")
    return found  # type: ignore[return-value]


def read_csv_rows(path: Path, dataset: str, columns: Iterable[str]) -> Iterator[dict[str, str]]:
    """Rows of a .csv or .csv.gz as {column: text}; a ConfigError names columns it lacks."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError(f"{dataset}: '{path}' lacks the column(s) {missing}; its header is "
                              f"{header[:20]}. Is it the published file?")
        yield from reader


# ---------------------------------------------------------------------------------------------
# Pseudonymous keys


def load_or_create_salt(data_dir: str | os.PathLike) -> str:
    """The secret salt of this data folder: created once (mode 0600), then reused so keys are
    stable across builds. Deleting it changes every pseudonymous key on the next build."""
    path = Path(data_dir) / SALT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = path.read_text().strip()
        if not salt:
            raise ConfigError(f"the pseudonym salt file '{path}' is empty; delete it to create a "
                              "new one (pseudonymous ids of data built here will change)") from None
        return salt
    with os.fdopen(fd, "w") as handle:
        salt = secrets.token_hex(32)
        handle.write(salt + "\n")
    return salt


@dataclasses.dataclass(frozen=True)
class Pseudonymizer:
    """Salted, stable keys for raw identifiers; `kind` keeps patient and study ids apart."""

    salt: str

    def __call__(self, kind: str, raw: str) -> str:
        return pseudonymous_id(f"{kind}:{raw}", self.salt)


# ---------------------------------------------------------------------------------------------
# Splits


def seeded_split(patient: str, seed: int, fractions: Mapping[str, float]) -> str:
    """A patient's split for data sets without an official one.

    A hash of (seed, patient) picks the split, so a patient's split never depends on which
    other patients exist: adding patients leaves everyone else where they were. Pass the raw,
    data-set-scoped patient id (not the salted key) so every machine draws the same split.
    """
    total = sum(fractions.values())
    if not fractions or abs(total - 1.0) > 1e-9 or min(fractions.values()) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    digest = hashlib.sha256(f"radfm-split:{seed}:{patient}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for split, fraction in fractions.items():
        cumulative += fraction
        if u < cumulative:
            return split
    return split  # u within rounding of 1.0


def check_disjoint_patients(patients_by_split: Mapping[str, Iterable[str]], dataset: str) -> None:
    """Refuse splits that share a patient: a ConfigError with the count and example keys."""
    owner: dict[str, str] = {}
    shared: dict[str, set[str]] = collections.defaultdict(set)
    for split, patients in patients_by_split.items():
        for patient in set(patients):
            if patient in owner and owner[patient] != split:
                shared[patient].update((owner[patient], split))
            owner.setdefault(patient, split)
    if shared:
        examples = ", ".join(f"{key} ({'/'.join(sorted(splits))})"
                             for key, splits in sorted(shared.items())[:3])
        raise ConfigError(
            f"{dataset}: {len(shared)} patient(s) appear in more than one split, e.g. {examples}; "
            "refusing to write a data set whose evaluation splits leak training patients. "
            "Check the split files in the manual folder.")


# ---------------------------------------------------------------------------------------------
# Skipped records


class SkipLog:
    """Counts, by reason, the records a build skips (each logged with its path) and the
    examples it writes per split; `summary()` goes into the data set's metadata."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.skipped: collections.Counter[str] = collections.Counter()
        self.filtered: collections.Counter[str] = collections.Counter()
        self.written: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def skip(self, reason: str, path: str | os.PathLike, detail: str = "") -> None:
        """A bad record: counted, logged with its path, and left out."""
        self.skipped[reason] += 1
        if len(self.examples[reason]) < _EXAMPLES_PER_REASON:
            self.examples[reason].append(os.fspath(path))
        log.warning("%s: skipped %s (%s)%s", self.dataset, os.fspath(path), reason,
                    f": {detail}" if detail else "")

    def filter(self, reason: str) -> None:
        """A good record the build's options leave out (e.g. a lateral view): counted only."""
        self.filtered[reason] += 1

    def wrote(self, split: str) -> None:
        self.written[split] += 1

    def summary(self) -> dict[str, Any]:
        return {"written": dict(self.written), "skipped": dict(self.skipped),
                "filtered": dict(self.filtered), "skipped_examples": dict(self.examples)}

    def describe(self) -> str:
        written = ", ".join(f"{s} {n}" for s, n in self.written.items()) or "nothing"
        skipped = ", ".join(f"{r} {n}" for r, n in self.skipped.most_common()) or "none"
        filtered = ", ".join(f"{r} {n}" for r, n in self.filtered.most_common()) or "none"
        return f"{self.dataset}: wrote {written}; skipped {skipped}; filtered out {filtered}"


# ---------------------------------------------------------------------------------------------
# Field parsing shared by CheXpert-style tables


def chexpert_value(cell: str) -> int:
    """A CheXpert-labeler CSV cell (1.0 / 0.0 / -1.0 / blank) as a label value; ValueError
    on anything else."""
    cell = cell.strip()
    if cell == "":
        return NOT_MENTIONED
    value = float(cell)
    if value not in (POSITIVE, NEGATIVE, UNCERTAIN):
        raise ValueError(f"label cell {cell!r} is not 1, 0, -1 or blank")
    return int(value)


def apply_uncertain_policy(labels: np.ndarray, policy: str) -> np.ndarray:
    """U-ignore keeps uncertain (-1); U-ones maps it to positive, U-zeros to negative."""
    mapped = {"ignore": UNCERTAIN, "ones": POSITIVE, "zeros": NEGATIVE}
    if policy not in mapped:
        raise ValueError(f"uncertain_policy must be one of {sorted(mapped)}, got {policy!r}")
    labels = np.asarray(labels, dtype=np.int8).copy()
    labels[labels == UNCERTAIN] = mapped[policy]
    return labels


def parse_age(cell: str, max_age: int = 120) -> int:
    """Age in years, -1 when blank or implausible; ValueError when not a number."""
    cell = cell.strip()
    if not cell:
        return -1
    age = int(float(cell))
    return age if 0 <= age <= max_age else -1


SEX_CODES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def parse_sex(cell: str) -> str:
    """'M' / 'F', or '' when unknown."""
    return SEX_CODES.get(cell.strip().lower(), "")


def views_name(views: tuple[str, ...]) -> str:
    """The config-name part for a view filter (empty = every view)."""
    return "views-" + ("+".join(views) if views else "all")


# ---------------------------------------------------------------------------------------------
# The base builder


@dataclasses.dataclass(frozen=True)
class PlannedExample:
    """One record before its image is read. `fields` holds every feature but the image."""

    key: str  # unique within the data set; becomes the TFDS example key
    split: str
    patient: str  # pseudonymous patient key (checked for leakage across splits)
    image_path: Path
    source_path: str  # image_path relative to the manual folder, stored in the record
    fields: dict[str, Any]


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


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of builders that read a user's local copy (TFDS manual_dir) of a published data set."""

    LABEL_NAMES: tuple[str, ...] = ()
    LAYOUT: str = ""  # the expected folder layout, shown in every manual-folder error
    # Nothing is downloaded, so there is no checksum file to look up (see synthetic_cxr).
    code_path = None

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
        ids = Pseudonymizer(load_or_create_salt(self._data_dir_root))
        planned = self._plan(manual_dir, ids, skips)
        by_split: dict[str, list[PlannedExample]] = {split: [] for split in SPLITS}
        for example in planned:
            by_split[example.split].append(example)
        empty = [split for split, examples in by_split.items() if not examples]
        if empty:
            raise ConfigError(
                f"{self.name}: split(s) {empty} would be empty; refusing to write an incomplete "
                f"data set. Check the manual folder's tables (records read: "
                f"{len(planned)}; skipped {dict(skips.skipped)}; filtered out {dict(skips.filtered)})")
        check_disjoint_patients({s: (e.patient for e in ex) for s, ex in by_split.items()}, self.name)
        return {split: self._generate_examples(split, examples, skips)
                for split, examples in by_split.items()}

    def _generate_examples(self, split: str, examples: list[PlannedExample],
                  skips: SkipLog) -> Iterator[tuple[str, dict[str, Any]]]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(examples), _READ_CHUNK):
                chunk = examples[start:start + _READ_CHUNK]
                for example, loaded in zip(chunk, pool.map(self._try_load, chunk)):
                    if isinstance(loaded, ImageReadError):
                        reason = MISSING_FILE if loaded.reason == "no such file" else UNREADABLE_IMAGE
                        skips.skip(reason, example.source_path, loaded.reason)
                        continue
                    skips.wrote(split)
                    yield example.key, {**example.fields, **loaded, "source_path": example.source_path}
        # Stored with the data set (TFDS writes the metadata after the last split).
        self.info.metadata["build_summary"] = skips.summary()
        if not skips.written[split]:
            raise ConfigError(f"{skips.describe()}. Every record of split '{split}' was skipped; "
                              "refusing to write an empty split. Check the files named above.")
        log.info("%s", skips.describe())

    def _try_load(self, example: PlannedExample) -> dict[str, Any] | ImageReadError:
        try:
            return self._load(example)
        except ImageReadError as err:
            return err


def read_text_file(path: Path) -> str:
    """A report file as text (UTF-8, undecodable bytes replaced)."""
    return path.read_text(encoding="utf-8", errors="replace")
