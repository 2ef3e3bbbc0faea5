"""From a DataConfig to ready data: the prepared splits (built on first use: generated for
synthetic_cxr, read from data.manual_dir for real data sets) and the tokenizer beside them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from radfm_jax.config.schema import DataConfig
from radfm_jax.data import shards
from radfm_jax.data.builders import registry
from radfm_jax.data.hf_tokenizer import HFTokenizer
from radfm_jax.data.pipeline import prepare_tokenizer
from radfm_jax.data.preprocessing import check_matches
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.errors import ConfigError, DataError

DEFAULT_DATA_DIR = Path("~/.cache/radfm_jax/data")


@dataclasses.dataclass(frozen=True)
class PreparedData:
    sources: dict[str, Any]  # split name -> random-access record source
    tokenizer: Tokenizer | HFTokenizer
    directory: Path  # the prepared data set's version folder
    label_names: tuple[str, ...]  # labels[:, i] of every record belongs to label_names[i]


class PatientSubset:
    """The studies of some patients of a random-access source, in source order (random access)."""

    def __init__(self, source: Any, indices: np.ndarray):
        self._source = source
        self._indices = indices

    @classmethod
    def first_patients(cls, source: Any, num_patients: int | None, seed: int,
                       fraction: float | None = None) -> "PatientSubset":
        """The studies of the first `num_patients` patients (or that `fraction` of them, at least
        one) of a seeded permutation of the source's distinct patient ids: with one seed a
        smaller subset lies inside a larger one."""
        patient_ids = [_text(source[i]["patient_id"]) for i in range(len(source))]
        distinct = sorted(set(patient_ids))  # sorted: the permutation must not depend on record order
        if fraction is not None:
            num_patients = max(1, round(fraction * len(distinct)))
        if not 0 < num_patients <= len(distinct):
            raise ConfigError(
                f"data.train_patients={num_patients}, but the training split has {len(distinct)} patients; "
                f"set it between 1 and {len(distinct)} (0 = all)"
            )
        order = np.random.default_rng(seed).permutation(len(distinct))
        chosen = {distinct[i] for i in order[:num_patients]}
        return cls(source, np.array([i for i, pid in enumerate(patient_ids) if pid in chosen], np.int64))

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> Any:
        return self._source[int(self._indices[index])]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve_data_dir(data_cfg: DataConfig) -> Path:
    """data.data_dir, else $RADFM_DATA_DIR, else ~/.cache/radfm_jax/data."""
    raw = data_cfg.data_dir or os.environ.get("RADFM_DATA_DIR") or str(DEFAULT_DATA_DIR)
    if "://" in raw:  # pathlib would quietly make a local folder named "gs:"
        raise ConfigError(
            f"data directory '{raw}' is on an object store; prepared data sets are read from a local "
            "or mounted file system: copy the prepared folder to local disk, or mount the bucket "
            "(gcsfuse), and set data.data_dir to that path (workdirs may be gs://)")
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"data directory '{path}' is a file; set data.data_dir to a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the data directory '{path}' ({err.strerror}); set data.data_dir "
            "(or RADFM_DATA_DIR) to a writable folder"
        ) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(
            f"the data directory '{path}' is not readable and writable; set data.data_dir "
            "(or RADFM_DATA_DIR) to a folder you own"
        )
    return path


def open_prepared(data_cfg: DataConfig) -> PreparedData:
    """Build the data set if it is missing (synthetic, or from data.manual_dir), check its
    recorded preprocessing against the config and its shard files (shards.check_changed: a
    DataError names every damaged one), then open every split and the tokenizer."""
    root = resolve_data_dir(data_cfg)
    builder = registry.prepare_dataset(data_cfg, root)
    recorded = registry.recorded_spec(builder)
    if recorded is not None:
        check_matches(recorded, type(builder).config_for(data_cfg).spec, dataset=data_cfg.name)
    directory = Path(builder.data_dir)
    rebuild = shards.rebuild_command(data_cfg, directory, root)
    # Shards changed since last seen intact are read in full (a stat per shard otherwise), so a
    # damaged one stops the run here, all of them named, not at whichever step first reads it.
    damaged = shards.check_changed(builder)
    if damaged:
        raise DataError(shards.damaged_message(data_cfg.name, directory, damaged, rebuild))
    try:
        sources = dict(builder.as_data_source())
    except Exception as err:  # tfds raises several types for missing / damaged shards
        raise DataError(
            f"cannot read the prepared data set in {builder.data_dir} ({type(err).__name__}: {err}); "
            f"rebuild it with: {rebuild}"
        ) from None
    # A read that fails later (a shard damaged since) names its shard file and the rebuild.
    sources = {split: shards.ShardedSource(source, builder, split, data_cfg.name, rebuild)
               for split, source in sources.items()}
    if data_cfg.tokenizer_file:
        tokenizer = HFTokenizer.load(data_cfg.tokenizer_file)
    else:
        tokenizer = prepare_tokenizer(
            sources["train"], data_cfg.vocab_size, directory / f"tokenizer_v{data_cfg.vocab_size}.model"
        )
    if data_cfg.train_patients and data_cfg.train_fraction != 1.0:
        raise ConfigError("set data.train_patients or data.train_fraction, not both")
    if not 0.0 < data_cfg.train_fraction <= 1.0:
        raise ConfigError(f"data.train_fraction must be in (0, 1], got {data_cfg.train_fraction}")
    # After the tokenizer: one tokenizer per data set, whatever the subset.
    if data_cfg.train_patients:
        sources["train"] = PatientSubset.first_patients(sources["train"], data_cfg.train_patients,
                                                        data_cfg.subset_seed)
    elif data_cfg.train_fraction < 1.0:
        sources["train"] = PatientSubset.first_patients(sources["train"], None, data_cfg.subset_seed,
                                                        fraction=data_cfg.train_fraction)
    return PreparedData(sources=sources, tokenizer=tokenizer, directory=directory,
                        label_names=registry.label_names(builder))
