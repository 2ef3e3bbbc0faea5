"""Subgroup performance at one global operating point (the protocol of Glocker et al., "Risk of
bias in chest radiography deep learning foundation models", 2023).

A deployed model has ONE threshold for everybody, so disparities show up as different TPR and
FPR per group at that threshold (AUROC per group is threshold-free and shown beside them). The
caller picks the threshold on the validation split (e.g. ``choose_threshold(val_scores,
val_targets, ("fpr", 0.2))``) and passes the test split here.

:func:`subgroup_report` returns flat JSON-ready keys, per attribute and group::

    sex/F/n_studies  sex/F/n_patients  sex/F/n_positive  sex/F/n_negative
    sex/F/tpr  sex/F/tpr_ci_low  sex/F/tpr_ci_high           (also fpr, auroc)
    sex/F/tpr_vs_rest  sex/F/tpr_vs_rest_ci_low  ..._ci_high (group minus all other rows)
    sex/F/skipped                                             (a reason, instead of metrics)
    sex/gap/tpr  sex/gap/tpr_ci_low  sex/gap/tpr_ci_high  sex/gap/tpr_max_group  ..._min_group

All intervals come from the same patient-level resamples (stratified by "patient has a
positive"), so a gap's interval accounts for the correlation between the groups it compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from radfm_jax.evals.bootstrap import (
    PatientResamples,
    interval_from_replicates,
    patient_has_positive,
    patient_resamples,
)
from radfm_jax.evals.metrics import as_binary_inputs, auroc

ArrayLike = np.ndarray | Sequence
METRICS = ("tpr", "fpr", "auroc")
UNKNOWN = "unknown"


def age_bins(ages: ArrayLike, edges: Sequence[float] = (0, 40, 60, 80, 200)) -> np.ndarray:
    """Age-group label of each age: ``"40-60"`` for ``40 <= age < 60``; missing (None / NaN) or
    outside the edges (e.g. negative placeholders) -> ``"unknown"``."""
    a = np.asarray(ages, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"age_bins: edges must be at least two increasing numbers; got {edges}")
    labels = np.array([f"{lo:g}-{hi:g}" for lo, hi in zip(e[:-1], e[1:])] + [UNKNOWN])
    known = np.isfinite(a) & (a >= e[0]) & (a < e[-1])
    bins = np.searchsorted(e, np.where(known, a, e[0]), side="right") - 1
    return labels[np.where(known, bins, e.size - 1)]


def _rates(s: np.ndarray, t: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """TPR and FPR at the threshold and AUROC; ``nan`` where a class is missing."""
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    tpr = np.sum(predicted & t) / n_pos if n_pos else np.nan
    fpr = np.sum(predicted & ~t) / n_neg if n_neg else np.nan
    return float(tpr), float(fpr), auroc(s, t)


def _resampled_rates(
    s: np.ndarray, t: np.ndarray, predicted: np.ndarray, masks: list[np.ndarray],
    resamples: PatientResamples,
) -> np.ndarray:
    """``(n_resamples, len(masks), 3)`` rates of every row subset on every resample: all subsets
    see the same resamples, so differences between them are paired."""
    replicates = np.empty((len(resamples), len(masks), len(METRICS)))
    for b, rows in enumerate(resamples):
        s_b, t_b, predicted_b = s[rows], t[rows], predicted[rows]
        for c, mask in enumerate(masks):
            m = mask[rows]
            replicates[b, c] = _rates(s_b[m], t_b[m], predicted_b[m])
    return replicates


def _group_labels(name: str, values: ArrayLike, n: int) -> np.ndarray:
    labels = np.asarray(values).astype(str)
    if labels.shape != (n,):
        raise ValueError(f"attribute {name!r} needs one value per row ({n}); got {labels.shape}")
    clashing = [g for g in [name, *np.unique(labels)] if "/" in g or g in ("", "gap")]
    if clashing:
        raise ValueError(f"attribute / group names {clashing} cannot be keys (no '/', '' or 'gap')")
    return labels


def subgroup_report(
    scores: ArrayLike,
    targets: ArrayLike,
    patient_ids: ArrayLike,
    attributes: Mapping[str, ArrayLike],
    threshold: float,
    *,
    min_count: int = 10,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """Per attribute and group: counts, TPR / FPR at ``threshold`` (``score >= threshold`` is
    positive), AUROC, each group minus the rest, and the largest gap, all with patient-bootstrap
    intervals (keys in the module docstring).

    Args:
      scores, targets: ``(N,)`` scores of one finding and its 0/1 labels, one row per study.
      patient_ids: ``(N,)`` patient of each study (resampling moves whole patients).
      attributes: name -> ``(N,)`` group of each row, e.g. ``{"sex": ..., "age": age_bins(...),
        "view": ...}``. Values become strings in the keys.
      threshold: the one global threshold, chosen by the caller on the validation split.
      min_count: a group (or the rest, for vs-rest) needs at least this many positives and
        negatives; smaller ones get a ``skipped`` reason instead of numbers.
      n_resamples, confidence, seed: as in :func:`radfm_jax.evals.bootstrap.bootstrap_ci`.

    The gap is ``metric(max group) - metric(min group)``, the two groups picked on the full data
    and their signed difference resampled, so with no real gap its interval covers 0 about as
    often as the confidence level for two groups. With more groups picking the extremes makes
    the gap optimistic; read the vs-rest differences there.
    """
    s, t = as_binary_inputs(scores, targets, "subgroup_report")
    pid = np.asarray(patient_ids)
    if pid.shape != s.shape:
        raise ValueError(f"patient_ids must have one entry per row ({s.size}); got {pid.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence}")
    if not np.isfinite(threshold):
        raise ValueError(f"subgroup_report: threshold must be finite; got {threshold}")
    if not attributes:
        raise ValueError("subgroup_report needs at least one attribute")
    predicted = s >= threshold
    report: dict[str, float | int | str] = {
        "threshold": float(threshold), "n_resamples": int(n_resamples),
        "confidence": float(confidence), "min_count": int(min_count),
    }

    def too_few(mask: np.ndarray) -> str | None:
        n_pos = int(t[mask].sum())
        n_neg = int(mask.sum()) - n_pos
        if min(n_pos, n_neg) < min_count:
            return f"{n_pos} positives and {n_neg} negatives; needs {min_count} of each"
        return None

    # Row subsets to evaluate: each included group and its rest, keyed (attribute, group, part).
    cells: dict[tuple[str, str, str], np.ndarray] = {}
    for name, values in attributes.items():
        labels = _group_labels(name, values, s.size)
        for group in np.unique(labels).tolist():
            member = labels == group
            prefix = f"{name}/{group}"
            report[f"{prefix}/n_studies"] = int(member.sum())
            report[f"{prefix}/n_patients"] = int(np.unique(pid[member]).size)
            report[f"{prefix}/n_positive"] = int(t[member].sum())
            report[f"{prefix}/n_negative"] = int((~t[member]).sum())
            reason = too_few(member)
            if reason is not None:
                report[f"{prefix}/skipped"] = reason
                continue
            cells[(name, group, "group")] = member
            rest_reason = too_few(~member)
            if rest_reason is None:
                cells[(name, group, "rest")] = ~member
            else:
                report[f"{prefix}/vs_rest_skipped"] = rest_reason

    keys = list(cells)
    masks = list(cells.values())
    estimates = np.array([_rates(s[m], t[m], predicted[m]) for m in masks])
    estimates = estimates.reshape(-1, len(METRICS))  # (0, 3) when every group is skipped
    resamples = patient_resamples(pid, n_resamples, seed, strata=patient_has_positive(pid, t))
    replicates = _resampled_rates(s, t, predicted, masks, resamples)

    def add(key: str, estimate: float, replicate: np.ndarray) -> None:
        interval = interval_from_replicates(estimate, replicate, confidence)
        report[key] = interval.estimate
        report[f"{key}_ci_low"] = interval.low
        report[f"{key}_ci_high"] = interval.high

    index = {key: c for c, key in enumerate(keys)}
    for name in attributes:
        groups = [group for (attr, group, part) in keys if attr == name and part == "group"]
        for group in groups:
            g = index[(name, group, "group")]
            rest = index.get((name, group, "rest"))
            for k, metric in enumerate(METRICS):
                add(f"{name}/{group}/{metric}", estimates[g, k], replicates[:, g, k])
                if rest is not None:
                    add(f"{name}/{group}/{metric}_vs_rest", estimates[g, k] - estimates[rest, k],
                        replicates[:, g, k] - replicates[:, rest, k])
        if len(groups) < 2:
            report[f"{name}/gap/skipped"] = "fewer than two groups with enough cases"
            continue
        columns = [index[(name, group, "group")] for group in groups]
        for k, metric in enumerate(METRICS):
            order = np.argsort(estimates[columns, k], kind="stable")  # distinct even when tied
            top, bottom = columns[order[-1]], columns[order[0]]
            add(f"{name}/gap/{metric}", estimates[top, k] - estimates[bottom, k],
                replicates[:, top, k] - replicates[:, bottom, k])
            report[f"{name}/gap/{metric}_max_group"] = keys[top][1]
            report[f"{name}/gap/{metric}_min_group"] = keys[bottom][1]
    return report
