"""Paired comparison of two evaluations on the same cases: per finding, the AUROC of run A minus
run B with a patient-bootstrap interval from shared resamples (the case mix cancels out of the
difference), refused unless both evaluated the same studies (evals/manifest.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from radfm_jax.data.findings import binary_targets
from radfm_jax.errors import ConfigError
from radfm_jax.evals.bootstrap import paired_difference_ci
from radfm_jax.evals.manifest import same_test_cases
from radfm_jax.evals.metrics import auroc


def compare_predictions(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], manifest_a: Mapping[str, Any],
                        manifest_b: Mapping[str, Any], *, n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Keys `compare/auroc_diff/<finding>` (A - B) with `/ci_low` and `/ci_high`."""
    problem = same_test_cases(manifest_a, manifest_b)
    if problem is not None:
        raise ConfigError(f"refusing to compare: {problem}")
    order_b = {study: row for row, study in enumerate(b["study_id"].tolist())}
    rows_b = np.array([order_b[study] for study in a["study_id"].tolist()])
    results: dict[str, float] = {}
    for index, finding in enumerate(a["label_names"].tolist()):
        targets, valid = binary_targets(a["labels"][:, index])
        interval = paired_difference_ci(auroc, a["scores"][valid, index], b["scores"][rows_b][valid, index],
                                        targets[valid], a["patient_id"][valid], n_resamples=n_resamples, seed=seed)
        key = f"compare/auroc_diff/{finding}"
        results.update({key: interval.estimate, f"{key}/ci_low": interval.low, f"{key}/ci_high": interval.high})
    return results
