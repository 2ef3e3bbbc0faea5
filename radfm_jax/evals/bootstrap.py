"""Patient-level bootstrap confidence intervals for evaluation metrics.

Studies of one patient are correlated (same anatomy, often the same finding), so rows are not
independent draws and resampling rows gives intervals that are too narrow. Every resample here
draws whole *patients* with replacement — a patient's rows always move together — and, when
asked, draws patients with and without a positive study separately, so each resample keeps both
classes (AUROC and TPR stay defined) and the data's number of positive patients.

* :func:`patient_resamples`: all resamples drawn at once as a ``(n_resamples, n_patients)``
  matrix of patient indices (:class:`PatientResamples`); ``.rows(b)`` expands one to row indices.
* :func:`bootstrap_ci`: percentile interval of any statistic of row-aligned arrays.
* :func:`paired_difference_ci`: interval of ``statistic(a) - statistic(b)`` on the same
  resamples, for comparing two models on the same cases.
* :func:`interval_from_replicates`: the interval from precomputed replicates (used by subgroups).

Intervals are percentile intervals, not BCa: they stay inside the statistic's range (AUROC in
[0, 1]), need no jackknife over patients (BCa's acceleration costs one statistic evaluation per
patient), and reach nominal coverage for AUROC in the simulation in tests/evals/test_bootstrap.py.
``scipy.stats.bootstrap`` is not used because it resamples observations, not clusters, and has no
strata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

ArrayLike = np.ndarray | Sequence


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval.

    ``estimate``: the statistic on the full data; ``low`` / ``high``: percentile bounds;
    ``std_error``: standard deviation of the replicates; ``n_resamples_used``: resamples where
    the statistic was defined (finite) — the others (e.g. one class only) were dropped.
    """

    estimate: float
    low: float
    high: float
    std_error: float
    n_resamples_used: int

    def covers(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)


@dataclass(frozen=True)
class PatientResamples:
    """Bootstrap resamples of patients. Patient ``j`` is the ``j``-th of ``np.unique(patient_ids)``.

    ``patients[b]`` lists the patients drawn for resample ``b`` (with repetition);
    ``rows_by_patient[first_row[j] : first_row[j] + n_rows[j]]`` are patient ``j``'s rows.
    """

    patients: np.ndarray
    rows_by_patient: np.ndarray
    first_row: np.ndarray
    n_rows: np.ndarray

    def __len__(self) -> int:
        return self.patients.shape[0]

    def rows(self, b: int) -> np.ndarray:
        """Row indices of resample ``b``: every row of each drawn patient, once per draw."""
        drawn = self.patients[b]
        lengths = self.n_rows[drawn]
        block_end = np.cumsum(lengths)
        # Output position k in block i reads rows_by_patient[first_row[drawn[i]] + k - start_i]:
        # one np.repeat builds that shift for all blocks, no loop over patients.
        shift = np.repeat(self.first_row[drawn] - (block_end - lengths), lengths)
        return self.rows_by_patient[np.arange(block_end[-1]) + shift]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.rows(b) for b in range(len(self)))


def _patient_codes(patient_ids: ArrayLike) -> np.ndarray:
    """``(N,)`` index of each row's patient in ``np.unique(patient_ids)``."""
    ids = np.asarray(patient_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"patient_ids must be a non-empty 1-D array; got shape {ids.shape}")
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def patient_has_positive(patient_ids: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """``(N,)`` bool: whether the row's patient has at least one positive row.

    The strata for :func:`patient_resamples` that keep both classes in every resample.
    """
    codes = _patient_codes(patient_ids)
    t = np.asarray(targets)
    if t.shape != codes.shape:
        raise ValueError(f"targets need one entry per row ({codes.size}); got shape {t.shape}")
    if t.dtype != np.bool_ and not np.all((t == 0) | (t == 1)):
        raise ValueError("targets must be 0/1 to stratify by 'patient has a positive'")
    return (np.bincount(codes, weights=t.astype(np.float64)) > 0)[codes]


def patient_resamples(
    patient_ids: ArrayLike, n_resamples: int, seed: int, strata: ArrayLike | None = None
) -> PatientResamples:
    """Draws ``n_resamples`` bootstrap resamples of whole patients, all at once.

    Each resample draws as many patients as the data has, with replacement, from each stratum
    separately (so the number of patients per stratum is the same in every resample).

    Args:
      patient_ids: ``(N,)`` patient of each row (any sortable values).
      n_resamples: number of resamples (>= 1).
      seed: seed of the NumPy generator; the same seed gives the same resamples.
      strata: optional ``(N,)`` stratum of each row, constant within a patient — e.g.
        :func:`patient_has_positive`.

    Raises:
      ValueError: bad shapes, ``n_resamples < 1``, or a patient whose rows lie in several strata.
    """
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples}")
    codes = _patient_codes(patient_ids)
    n_rows = np.bincount(codes)
    n_patients = n_rows.size
    patient_stratum = np.zeros(n_patients, dtype=np.intp)
    if strata is not None:
        s = np.asarray(strata)
        if s.shape != codes.shape:
            raise ValueError(f"strata must have one entry per row ({codes.size}); got {s.shape}")
        row_stratum = np.unique(s, return_inverse=True)[1].reshape(-1)
        patient_stratum[codes] = row_stratum
        if np.any(patient_stratum[codes] != row_stratum):
            raise ValueError("strata must be constant within a patient (a resample moves whole "
                             "patients); to stratify by outcome use patient_has_positive()")
    rng = np.random.default_rng(seed)
    drawn = np.empty((int(n_resamples), n_patients), dtype=np.intp)
    filled = 0
    for stratum in np.unique(patient_stratum):  # a handful of strata, not a loop over data
        members = np.flatnonzero(patient_stratum == stratum)
        picks = rng.integers(0, members.size, size=(int(n_resamples), members.size))
        drawn[:, filled : filled + members.size] = members[picks]
        filled += members.size
    return PatientResamples(
        patients=drawn,
        rows_by_patient=np.argsort(codes, kind="stable"),
        first_row=np.cumsum(n_rows) - n_rows,
        n_rows=n_rows,
    )


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence}")


def interval_from_replicates(
    estimate: float, replicates: ArrayLike, confidence: float = 0.95
) -> Interval:
    """Percentile interval of the finite ``replicates``; NaN / inf ones (undefined) are dropped.

    With no finite replicate the bounds are NaN and ``n_resamples_used`` is 0.
    """
    _check_confidence(confidence)
    values = np.asarray(replicates, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"), float("nan"), 0)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    std_error = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return Interval(float(estimate), float(low), float(high), std_error, int(values.size))


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    patient_ids: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratify_by: ArrayLike | None = None,
) -> Interval:
    """Patient-bootstrap percentile interval of ``statistic(*arrays)``.

    Each resample evaluates ``statistic(*(a[rows] for a in arrays))`` on the rows of the drawn
    patients; resamples where it is undefined (NaN) are dropped and counted.

    Args:
      statistic: function of the row-aligned arrays returning a float, e.g. ``auroc``.
      arrays: arrays whose first axis is the ``N`` rows (scores, targets, ...).
      patient_ids: ``(N,)`` patient of each row.
      n_resamples, confidence, seed: number of resamples, interval level, generator seed.
      stratify_by: optional ``(N,)`` 0/1 targets: patients with and without a positive are
        resampled separately, so every resample keeps both classes when the data has them.
    """
    _check_confidence(confidence)
    data = [np.asarray(a) for a in arrays]
    n = _patient_codes(patient_ids).size
    if not data:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    shapes = [a.shape for a in data]
    if any(a.ndim == 0 or a.shape[0] != n for a in data):
        raise ValueError(f"every array needs one row per patient_ids entry ({n}); got {shapes}")
    strata = None if stratify_by is None else patient_has_positive(patient_ids, stratify_by)
    resamples = patient_resamples(patient_ids, n_resamples, seed, strata)
    estimate = float(statistic(*data))
    replicates = [statistic(*(a[rows] for a in data)) for rows in resamples]
    return interval_from_replicates(estimate, replicates, confidence)


def paired_difference_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    targets: ArrayLike,
    patient_ids: ArrayLike,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratify: bool = True,
) -> Interval:
    """Interval of ``statistic(scores_a, targets) - statistic(scores_b, targets)``.

    Both models are scored on the same resamples, so the case mix cancels out of the difference
    (much narrower than comparing two separate intervals). An interval excluding 0 means model
    a is better (or worse) on this population. ``stratify`` resamples patients with and without
    a positive separately (see :func:`bootstrap_ci`).
    """
    if np.shape(scores_a) != np.shape(scores_b):
        raise ValueError(
            f"scores_a and scores_b must have the same shape; got "
            f"{np.shape(scores_a)}, {np.shape(scores_b)}"
        )

    def difference(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> float:
        return statistic(a, t) - statistic(b, t)

    return bootstrap_ci(
        difference, scores_a, scores_b, targets,
        patient_ids=patient_ids, n_resamples=n_resamples, confidence=confidence, seed=seed,
        stratify_by=targets if stratify else None,
    )
