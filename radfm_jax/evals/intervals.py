"""Patient-bootstrap intervals for the evaluators' per-finding AUROC / AUPRC and their mean,
written as `<key>/ci_low` and `<key>/ci_high` beside each point estimate (eval.bootstrap
resamples; 0 = none)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from radfm_jax.data.findings import binary_targets
from radfm_jax.evals.bootstrap import bootstrap_ci
from radfm_jax.evals.metrics import auroc

Metric = Callable[[np.ndarray, np.ndarray], float]


def mean_over_findings(metric: Metric, scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over findings where it is defined of metric(scores[:, i], targets of labels[:, i])
    (uncertain labels left out)."""
    values = []
    for index in range(labels.shape[1]):
        targets, valid = binary_targets(labels[:, index])
        value = metric(scores[valid, index], targets[valid])
        if not np.isnan(value):
            values.append(value)
    return float(np.mean(values)) if values else float("nan")


def _interval_keys(key: str, low: float, high: float) -> dict[str, float]:
    return {f"{key}/ci_low": low, f"{key}/ci_high": high}


def per_finding_intervals(prefix: str, metric_name: str, metric: Metric, scores: np.ndarray, labels: np.ndarray,
                          label_names: Sequence[str], patient_ids: np.ndarray, *, n_resamples: int,
                          seed: int) -> dict[str, float]:
    """Intervals of `metric` per finding (uncertain labels left out; resampling whole patients,
    stratified by whether a patient has a positive) and of its mean over findings (the mean's
    resamples use the same patient draws for every finding). scores (N, findings)."""
    results: dict[str, float] = {}
    for index, finding in enumerate(label_names):
        targets, valid = binary_targets(labels[:, index])
        interval = bootstrap_ci(metric, scores[valid, index], targets[valid], patient_ids=patient_ids[valid],
                                n_resamples=n_resamples, seed=seed, stratify_by=targets[valid])
        results.update(_interval_keys(f"{prefix}/{metric_name}/{finding}", interval.low, interval.high))

    def mean_metric(scores: np.ndarray, labels: np.ndarray) -> float:
        return mean_over_findings(metric, scores, labels)

    mean = bootstrap_ci(mean_metric, scores, labels, patient_ids=patient_ids, n_resamples=n_resamples, seed=seed)
    results.update(_interval_keys(f"{prefix}/{metric_name}_mean", mean.low, mean.high))
    return results


def auroc_intervals(prefix: str, scores: np.ndarray, labels: np.ndarray, label_names: Sequence[str],
                    patient_ids: np.ndarray, *, n_resamples: int, seed: int) -> dict[str, float]:
    return per_finding_intervals(prefix, "auroc", auroc, scores, labels, label_names, patient_ids,
                                 n_resamples=n_resamples, seed=seed)
