"""Evaluation manifests: what an evaluation was run on, written beside its metrics, so two
results are compared only when they come from the same cases.

A manifest names the data set, its prepared folder and builder version, a hash of each split's
sorted study ids with its patient / study counts, the label policy, where thresholds and
temperatures came from, the checkpoint step and a hash of its parameters, and the resolved
config. `same_test_cases` is what `radfm eval --compare` checks first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from radfm_jax.config.overrides import to_dict
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.evals.split_inference import read_metadata
from radfm_jax.parallel.multihost import gather_to_host

# Where operating points and temperatures come from in every evaluator that reports them.
THRESHOLD_SOURCE = "chosen on the val split, applied unchanged to the evaluated split"


def split_summary(source: Any, max_examples: int = 0) -> dict[str, Any]:
    """Studies, patients and a SHA-256 of the sorted study ids of a split (or its first rows)."""
    metadata = read_metadata(source, max_examples)
    studies = sorted(metadata["study_id"].tolist())
    digest = hashlib.sha256("\n".join(studies).encode()).hexdigest()
    return {"studies": len(studies), "patients": int(len(set(metadata["patient_id"].tolist()))),
            "study_ids_sha256": digest}


SUMMARIES_FILE = "split_summaries.json"  # beside the prepared data: a built data set never changes


def split_summaries(data: Any, evaluated_split: str, max_examples: int = 0) -> dict[str, dict[str, Any]]:
    """split_summary of every split of `data` (data/datasets.PreparedData), cached in its
    folder, and of the evaluated rows when an evaluation reads only the first max_examples.
    A training subset (data.train_fraction / train_patients) is summarised as it is used."""
    cache = Path(data.directory) / SUMMARIES_FILE
    stored = json.loads(cache.read_text()) if cache.is_file() else {}
    summaries = {}
    for split, source in data.sources.items():
        full = split in stored and stored[split]["studies"] == len(source)
        summaries[split] = stored[split] if full else split_summary(source)
    if summaries != stored:
        try:
            cache.write_text(json.dumps(summaries, indent=2) + "\n")
        except OSError:
            pass  # a read-only data folder: summaries are recomputed next time
    if max_examples and max_examples < len(data.sources[evaluated_split]):
        summaries[f"{evaluated_split}[:{max_examples}]"] = split_summary(data.sources[evaluated_split], max_examples)
    return summaries


def params_sha256(params: Any) -> str:
    """A hash of every parameter's name, shape, dtype and bytes (a host copy gathered from every
    process: all processes call this)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(gather_to_host(params))[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        array = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{array.shape}|{array.dtype}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def evaluated_split_name(config: ExperimentConfig) -> str:
    split, count = config.eval.split, config.eval.max_examples
    return f"{split}[:{count}]" if count else split


def evaluation_manifest(config: ExperimentConfig, data: Any, splits: Mapping[str, dict[str, Any]], step: int,
                        params_hash: str) -> dict[str, Any]:
    """The manifest of an evaluation of `config`'s checkpoint at `step` on `data`
    (data/datasets.PreparedData); `splits`: split name -> split_summary."""
    evaluated = evaluated_split_name(config)
    return {
        "data_set": config.data.name,
        "prepared_folder": str(data.directory),
        "builder_version": Path(data.directory).name,
        "evaluated_split": evaluated if evaluated in splits else config.eval.split,
        "splits": dict(splits),
        "label_names": list(data.label_names),
        "label_policy": {"uncertain": config.data.uncertain_policy,
                         "not_mentioned": "negative", "uncertain_in_metrics": "left out"},
        "thresholds_and_temperatures": THRESHOLD_SOURCE,
        "checkpoint": {"step": step, "params_sha256": params_hash},
        "config": to_dict(config),
    }


def same_test_cases(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """None when two manifests evaluated the same cases, else why not."""
    split_a, split_b = a["evaluated_split"], b["evaluated_split"]
    if a["data_set"] != b["data_set"]:
        return f"different data sets ({a['data_set']} vs {b['data_set']})"
    hash_a = a["splits"].get(split_a, {}).get("study_ids_sha256")
    hash_b = b["splits"].get(split_b, {}).get("study_ids_sha256")
    if hash_a != hash_b:
        return (f"the evaluated splits hold different studies ({split_a} {str(hash_a)[:12]}... vs "
                f"{split_b} {str(hash_b)[:12]}...)")
    if a["label_names"] != b["label_names"]:
        return "different label vocabularies"
    return None
