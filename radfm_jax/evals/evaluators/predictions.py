"""Per-study predictions an evaluation saves beside its metrics (`step_<8 digits>.predictions.npz`),
so two runs can be compared on the same cases afterwards (`radfm eval --compare`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def write_predictions(path: str | Path, kind: str, scores: np.ndarray, labels: np.ndarray,
                      metadata: Mapping[str, np.ndarray], label_names: Sequence[str]) -> Path:
    """scores (N, findings) of evaluator `kind`, the labels and each study's metadata (patient
    and study id, sex, age, view: enough to redo a subgroup analysis afterwards)."""
    path = Path(path)
    np.savez(path, kind=np.array(kind), scores=np.asarray(scores, np.float64), labels=np.asarray(labels),
             label_names=np.asarray(list(label_names)),
             **{name: np.asarray(values) for name, values in metadata.items()})
    return path


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
