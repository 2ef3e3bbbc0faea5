"""Integrity, leakage and balance checks of a prepared data set: damaged shard files (every
record of every shard read, data/shards.py), patients shared between splits, duplicate images
within and across splits (by a hash of the stored image bytes), and label prevalence per split.
`radfm data check NAME` prints them and exits non-zero when shards are damaged (listing every
one and the rebuild command; the other checks are skipped) or patients overlap."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import DataConfig, ExperimentConfig
from radfm_jax.data import shards
from radfm_jax.data.builders.registry import builder_class, label_names, prepare_dataset
from radfm_jax.data.datasets import resolve_data_dir
from radfm_jax.data.findings import LABEL_VALUE_NAMES
from radfm_jax.errors import ConfigError, DataError

_EXAMPLE_KEYS = 3


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_sources(sources: Mapping[str, Sequence[dict]], label_names: Sequence[str]) -> dict[str, Any]:
    """The checks over random-access splits {split: records} (records as a data source gives them).

    Returns {"splits": {split: n}, "patient_overlap": {"count", "pairs", "examples"},
    "duplicates": {"within": {split: n}, "across": {"a/b": n}}, "prevalence": {split: {label:
    {"positive", "negative", "uncertain", "not_mentioned"}}}}. Within a split a duplicate is a
    record whose image equals an earlier one's; across splits it is a distinct image in both.
    """
    patients: dict[str, set[str]] = {}
    hashes: dict[str, collections.Counter[str]] = {}
    prevalence: dict[str, dict[str, dict[str, int]]] = {}
    for split, source in sources.items():
        patients[split], hashes[split] = set(), collections.Counter()
        counts = np.zeros((len(label_names), len(LABEL_VALUE_NAMES)), np.int64)
        values = np.array(list(LABEL_VALUE_NAMES))
        for i in range(len(source)):
            record = source[i]
            patients[split].add(_text(record["patient_id"]))
            hashes[split][hashlib.sha256(np.ascontiguousarray(record["image"]).tobytes()).hexdigest()] += 1
            labels = np.asarray(record["labels"])
            counts += labels[:, None] == values[None, :]
        prevalence[split] = {
            name: {LABEL_VALUE_NAMES[v]: int(counts[j, k]) for k, v in enumerate(values)}
            for j, name in enumerate(label_names)}
    pairs = {f"{a}/{b}": patients[a] & patients[b] for a, b in itertools.combinations(sources, 2)}
    shared = sorted(set().union(*pairs.values())) if pairs else []
    return {
        "splits": {split: len(source) for split, source in sources.items()},
        "patient_overlap": {"count": len(shared), "pairs": {k: len(v) for k, v in pairs.items()},
                            "examples": shared[:_EXAMPLE_KEYS]},
        "duplicates": {
            "within": {s: sum(n - 1 for n in h.values()) for s, h in hashes.items()},
            "across": {f"{a}/{b}": len(hashes[a].keys() & hashes[b].keys())
                       for a, b in itertools.combinations(sources, 2)},
        },
        "prevalence": prevalence,
    }


def format_report(name: str, result: Mapping[str, Any]) -> str:
    """The check result as plain-text tables."""
    lines = [f"data set {name}: " + ", ".join(f"{s} {n}" for s, n in result["splits"].items())]
    overlap = result["patient_overlap"]
    lines.append(f"patients in more than one split: {overlap['count']} "
                 f"({', '.join(f'{k} {v}' for k, v in overlap['pairs'].items())})"
                 + (f", e.g. {', '.join(overlap['examples'])}" if overlap["count"] else ""))
    dup = result["duplicates"]
    lines.append("duplicate images within a split: "
                 + ", ".join(f"{k} {v}" for k, v in dup["within"].items()))
    lines.append("duplicate images across splits: "
                 + ", ".join(f"{k} {v}" for k, v in dup["across"].items()))
    columns = list(LABEL_VALUE_NAMES.values())
    for split, table in result["prevalence"].items():
        width = max((len(label) for label in table), default=5)
        lines.append(f"\nlabels in {split} ({' / '.join(columns)}):")
        lines.append(f"  {'label':<{width}}  " + "  ".join(f"{c:>13}" for c in columns))
        for label, counts in table.items():
            lines.append(f"  {label:<{width}}  " + "  ".join(f"{counts[c]:>13}" for c in columns))
    return "\n".join(lines)


def check_dataset(builder) -> dict[str, Any]:
    """check_sources over a prepared TFDS builder's splits and its label names."""
    return check_sources(dict(builder.as_data_source()), label_names(builder))


def data_config(name: str | None, overrides: Sequence[str], experiment: str | None = None) -> DataConfig:
    """The DataConfig `radfm data check [NAME] [--config EXPERIMENT] --set data.x=...` describes:
    the experiment's data (so its preprocessing) when one is named, else the preprocessing
    data set NAME's recipe trains with (config.presets.recipe_data), then the overrides."""
    outside = [o for o in overrides if not o.startswith("data.")]
    if outside:
        raise ConfigError(f"radfm data check takes only data.* overrides, got {outside}")
    if experiment is not None:
        from radfm_jax.config.loading import load_experiment

        base = load_experiment(experiment)
        if name is not None and name != base.data.name:
            raise ConfigError(f"radfm data check: {experiment} trains on {base.data.name!r}, not {name!r}; "
                              f"drop the name or the --config")
    elif name is None:
        raise ConfigError("radfm data check needs a data set name or --config EXPERIMENT")
    else:
        from radfm_jax.config.presets import recipe_data

        builder_class(name)  # an unknown name is a ConfigError listing the known ones
        base = dataclasses.replace(ExperimentConfig(), data=recipe_data(name))
    return apply_overrides(base, overrides).data


def check_shards(builder, data_cfg: DataConfig, data_dir) -> None:
    """Read every record of every shard; print the damaged ones (all of them) and raise a
    DataError with the rebuild command when there are any."""
    files = shards.shard_files(builder)
    if not files:
        return
    damaged = shards.find_damaged(builder)
    if not damaged:
        print(f"shard files: {len(files)}, every record readable")
        return
    directory = Path(builder.data_dir)
    rebuild = shards.rebuild_command(data_cfg, directory, data_dir)
    print(f"damaged shard files: {len(damaged)} of {len(files)} (the other checks are skipped)")
    for item in damaged:
        print(f"  {item.shard.path}  [{item.shard.split}] {item.reason}")
    print(f"rebuild the data set with:\n  {rebuild}")
    raise DataError(f"{len(damaged)} of {len(files)} shard files of the prepared data set {data_cfg.name} "
                    f"are damaged (listed above); rebuild the data set with: {rebuild}")


def run_check(name: str | None, overrides: Sequence[str], experiment: str | None = None) -> int:
    """`radfm data check`: prepare the data set if needed (with the preprocessing its recipe or
    the named experiment trains with), check its shard files, print the checks; 1 when
    patients overlap between splits, else 0. Damaged shards are listed and raise a DataError
    (the CLI's one-line error, exit 2)."""
    data_cfg = data_config(name, overrides, experiment)
    print(f"checking {data_cfg.name} as built for training: {data_cfg.image_size} px images"
          + (f" ({experiment})" if experiment else " (its recipe's preprocessing)"))
    data_dir = resolve_data_dir(data_cfg)
    builder = prepare_dataset(data_cfg, data_dir)
    check_shards(builder, data_cfg, data_dir)
    result = check_dataset(builder)
    print(format_report(data_cfg.name, result))
    return 1 if result["patient_overlap"]["count"] else 0
