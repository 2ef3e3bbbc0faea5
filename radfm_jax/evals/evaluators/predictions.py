"""Per-study predictions an evaluation saves beside its metrics (`step_<8 digits>.predictions.npz`),
so two runs can be compared on the same cases afterwards (`radfm eval --compare`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from etils import epath


def write_predictions(path: epath.PathLike, kind: str, scores: np.ndarray, labels: np.ndarray,
                      metadata: Mapping[str, np.ndarray], label_names: Sequence[str]) -> epath.Path:
    """scores (N, findings) of evaluator `kind`, the labels and each study's metadata (patient
    and study id, sex, age, view: enough to redo a subgroup analysis afterwards)."""
    path = epath.Path(path)
    with path.open("wb") as file:  # through epath: gs:// workdirs too
        np.savez(file, kind=np.array(kind), scores=np.asarray(scores, np.float64), labels=np.asarray(labels),
                 label_names=np.asarray(list(label_names)),
                 **{name: np.asarray(values) for name, values in metadata.items()})
    return path


def read_predictions(path: epath.PathLike) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
