"""Patient-level bootstrap: resampling invariants, reproducibility and coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from radfm_jax.evals.bootstrap import (
    Interval,
    bootstrap_ci,
    interval_from_replicates,
    paired_difference_ci,
    patient_has_positive,
    patient_resamples,
)
from radfm_jax.evals.metrics import auroc


def _clustered(rng: np.random.Generator, n_pos: int, n_neg: int, d: float = 1.0, rho: float = 0.7):
    """Binormal scores with 1–5 studies per patient sharing a patient effect (correlation rho).

    Labels are per patient, so every positive–negative pair spans two independent patients and
    the expected AUROC is exactly Phi(d / sqrt(2))."""
    label = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    patient_effect = rng.normal(0.0, np.sqrt(rho), label.size)
    patient_ids = np.repeat(np.arange(label.size), rng.integers(1, 6, label.size))
    targets = label[patient_ids]
    noise = rng.normal(0.0, np.sqrt(1.0 - rho), patient_ids.size)
    scores = d * targets + patient_effect[patient_ids] + noise
    return scores, targets, patient_ids


# ---------------------------------------------------------------- resamples
def test_resamples_move_whole_patients() -> None:
    rng = np.random.default_rng(0)
    names = np.array([f"p{i:02d}" for i in range(30)])
    patient_ids = names[rng.integers(0, 30, size=120)]  # uneven, interleaved rows per patient
    resamples = patient_resamples(patient_ids, n_resamples=50, seed=1)
    assert len(resamples) == 50
    patients = np.unique(patient_ids)
    for b, rows in enumerate(resamples):
        copies = np.bincount(rows, minlength=patient_ids.size)
        drawn = np.bincount(resamples.patients[b], minlength=patients.size)
        assert drawn.sum() == patients.size  # as many patients as the data has
        for j, patient in enumerate(patients):
            # Every row of the patient appears exactly as often as the patient was drawn.
            assert np.all(copies[patient_ids == patient] == drawn[j])


def test_rows_match_a_naive_expansion() -> None:
    patient_ids = np.array([3, 1, 3, 2, 1, 3, 7])
    resamples = patient_resamples(patient_ids, n_resamples=20, seed=0)
    patients = np.unique(patient_ids)
    for b, rows in enumerate(resamples):
        expected = []
        for j in resamples.patients[b]:
            expected.extend(np.flatnonzero(patient_ids == patients[j]).tolist())
        assert rows.tolist() == expected


def test_stratification_keeps_both_classes() -> None:
    # Two positive patients among 100: without strata ~13 % of resamples have no positive.
    patient_ids = np.repeat(np.arange(100), 2)
    targets = np.isin(patient_ids, [4, 57]) & (np.arange(200) % 2 == 0)
    plain = patient_resamples(patient_ids, 300, seed=0)
    assert any(not targets[rows].any() for rows in plain)
    strata = patient_has_positive(patient_ids, targets)
    assert strata.sum() == 4  # both rows of each positive patient
    stratified = patient_resamples(patient_ids, 300, seed=0, strata=strata)
    for rows in stratified:
        assert targets[rows].any() and not targets[rows].all()
        assert strata[rows].sum() == 4  # always two positive patients, two rows each


def test_strata_must_be_constant_within_a_patient() -> None:
    with pytest.raises(ValueError, match="constant within a patient"):
        patient_resamples([1, 1, 2], 10, seed=0, strata=[0, 1, 0])


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_resamples"):
        patient_resamples([1, 2], 0, seed=0)
    with pytest.raises(ValueError, match="one row per"):
        bootstrap_ci(auroc, [0.1, 0.2, 0.3], [0, 1], patient_ids=[1, 2, 3])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.mean, [0.1, 0.2], patient_ids=[1, 2], confidence=95)
    with pytest.raises(ValueError, match="same shape"):
        paired_difference_ci(auroc, [0.1, 0.2], [0.1], [0, 1], [1, 2])


# ---------------------------------------------------------------- intervals
def test_seeded_reproducibility() -> None:
    scores, targets, patient_ids = _clustered(np.random.default_rng(0), 20, 30)

    def ci(seed: int) -> Interval:
        return bootstrap_ci(auroc, scores, targets, patient_ids=patient_ids,
                            n_resamples=200, seed=seed, stratify_by=targets)

    assert ci(3) == ci(3)
    assert ci(3) != ci(4)


def test_undefined_resamples_are_dropped_and_counted() -> None:
    patient_ids = np.arange(40)
    targets = patient_ids == 0  # one positive patient: often absent from an unstratified resample
    scores = np.linspace(0.0, 1.0, 40)
    interval = bootstrap_ci(auroc, scores, targets, patient_ids=patient_ids, n_resamples=400)
    assert 0 < interval.n_resamples_used < 400
    assert np.isfinite([interval.low, interval.high]).all()
    stratified = bootstrap_ci(auroc, scores, targets, patient_ids=patient_ids, n_resamples=400,
                              stratify_by=targets)
    assert stratified.n_resamples_used == 400
    nothing = interval_from_replicates(0.5, [np.nan, np.nan])
    assert nothing.n_resamples_used == 0 and np.isnan(nothing.low)


def test_mean_interval_matches_normal_theory() -> None:
    # For a mean of n iid values the bootstrap interval ~ mean +- 1.96 sd / sqrt(n).
    values = np.random.default_rng(0).exponential(size=2000)
    interval = bootstrap_ci(np.mean, values, patient_ids=np.arange(values.size), n_resamples=2000)
    half_width = norm.ppf(0.975) * values.std(ddof=1) / np.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.std_error == pytest.approx(half_width / norm.ppf(0.975), rel=0.1)
    assert interval.low == pytest.approx(values.mean() - half_width, abs=0.2 * half_width)
    assert interval.high == pytest.approx(values.mean() + half_width, abs=0.2 * half_width)


def test_auroc_interval_coverage_by_simulation() -> None:
    """Over 200 independent clustered data sets the 95 % patient-bootstrap interval covers the
    true AUROC about 95 % of the time, while resampling rows (ignoring patients) is too narrow."""
    d = 1.0
    true_auroc = norm.cdf(d / np.sqrt(2.0))
    by_patient, by_row = [], []
    for repeat in range(200):
        scores, targets, patient_ids = _clustered(np.random.default_rng(1000 + repeat), 40, 60, d)
        for ids, hits in ((patient_ids, by_patient), (np.arange(targets.size), by_row)):
            interval = bootstrap_ci(auroc, scores, targets, patient_ids=ids, n_resamples=300,
                                    seed=repeat, stratify_by=targets)
            hits.append(interval.covers(true_auroc))
    assert 0.88 <= np.mean(by_patient) <= 0.99
    assert np.mean(by_row) < 0.86  # the design effect the patient bootstrap accounts for


# ---------------------------------------------------------------- paired differences
def test_paired_difference_with_itself_is_exactly_zero() -> None:
    scores, targets, patient_ids = _clustered(np.random.default_rng(1), 20, 30)
    same = paired_difference_ci(auroc, scores, scores, targets, patient_ids, n_resamples=200)
    assert (same.estimate, same.low, same.high, same.std_error) == (0.0, 0.0, 0.0, 0.0)
    assert same.n_resamples_used == 200


def test_paired_difference_detects_a_better_model() -> None:
    rng = np.random.default_rng(2)
    scores, targets, patient_ids = _clustered(rng, 40, 60, d=0.5)
    better = scores + 1.0 * targets  # same cases, larger separation
    difference = paired_difference_ci(auroc, better, scores, targets, patient_ids, n_resamples=500)
    assert difference.estimate > 0 and difference.low > 0
    assert not difference.covers(0.0)
