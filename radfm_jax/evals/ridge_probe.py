"""Closed-form linear probe on frozen image features, run on the host (NumPy / SciPy).

Per finding, a ridge regression of the targets in {-1, +1} onto the standardised features with
an unpenalised bias, minimising ``||y - X w - b||^2 + l2 * ||w||^2`` over the finding's
committed rows: the objective of ``sklearn.linear_model.Ridge(alpha=l2, fit_intercept=True)``,
so ``l2`` is on the sum-of-squares scale and its effect shrinks as the number of rows grows.
The ``(D+1) x (D+1)`` normal equations are solved by Cholesky; one Gram matrix serves every
finding whose rows are the same, and other findings get it by subtracting the rows they drop.

The strength is chosen per finding by AUROC on a seeded, class-stratified held-out part of the
probe-training rows (ties broken by the held-out squared error), then the probe is refitted on
all of the finding's rows. Uncertain labels never enter a fit or a score (see
:func:`radfm_jax.data.findings.binary_targets`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import linalg

from radfm_jax.data.findings import LABEL_VALUE_NAMES, binary_targets
from radfm_jax.errors import ConfigError
from radfm_jax.evals.metrics import auroc

# On the sum-of-squares scale of Ridge: with thousands of standardised rows the Gram matrix's
# eigenvalues are in the thousands, so the grid reaches 1e4 to regularise at all there.
DEFAULT_L2_GRID: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


# eq=False: a field-wise == on NumPy arrays would be ambiguous, so probes compare by identity.
@dataclasses.dataclass(frozen=True, eq=False)
class LinearProbe:
    """A fitted probe: ``scores = ((features - mean) / scale) @ weights + bias``.

    Attributes:
      mean, scale: ``(D,)`` standardisation from the probe-training rows (scale 1 for a
        constant feature).
      weights: ``(D, F)`` on the standardised features; NaN columns for skipped findings.
      bias: ``(F,)``; NaN for skipped findings.
      l2: ``(F,)`` the chosen ridge strength per finding; NaN for skipped findings.
      skip_reasons: finding column -> why it was not fitted (its scores are NaN).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    l2: np.ndarray
    skip_reasons: dict[int, str]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` probe scores (higher = more likely positive); NaN columns where skipped."""
        x = _checked_features(features, "features")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"linear probe: features have {x.shape[1]} dimensions but the probe was fitted on "
                f"{self.mean.shape[0]}; score features from the same image tower"
            )
        return ((x - self.mean) / self.scale) @ self.weights + self.bias


def fit_linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    *,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> LinearProbe:
    """Fits one ridge probe per finding (column of ``train_labels``) on frozen features.

    Args:
      train_features: ``(N, D)`` finite features of the probe-training images.
      train_labels: ``(N, F)`` CheXpert values (1 positive, 0 negative, -1 uncertain,
        -2 not mentioned); positive vs negative / not mentioned, uncertain rows left out.
      l2_grid: candidate ridge strengths (> 0). With a single value no rows are held out.
      val_fraction: share of each class's rows held out to choose the strength, in (0, 1).
      seed: seeds the held-out split.

    A finding is skipped (NaN scores, reason in ``skip_reasons``) when its committed rows hold a
    single class, or, when choosing among several strengths, fewer than two rows of a class.
    """
    x = _checked_features(train_features, "train_features")
    labels = _checked_labels(train_labels, x.shape[0])
    grid = _checked_grid(l2_grid)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"linear probe: val_fraction must be in (0, 1); got {val_fraction}")

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    design = np.hstack([(x - mean) / scale, np.ones((x.shape[0], 1))])
    full_gram = design.T @ design
    targets, valid = binary_targets(labels)
    signed = 2.0 * targets - 1.0
    num_findings = labels.shape[1]

    skip_reasons = _skip_reasons(targets, valid, choosing_l2=len(grid) > 1)
    fitted = [j for j in range(num_findings) if j not in skip_reasons]

    chosen = np.full(num_findings, np.nan)
    if len(grid) == 1:
        chosen[fitted] = grid[0]
    else:
        held_out = _stratified_holdout(targets, valid, fitted, val_fraction, seed)
        chosen[fitted] = _select_l2(design, full_gram, signed, valid & ~held_out, held_out, fitted, grid)

    coefficients = np.full((design.shape[1], num_findings), np.nan)
    for columns in _columns_by_rows(valid, fitted):
        rows = valid[:, columns[0]]
        gram, rhs = _normal_equations(design, full_gram, signed[:, columns], rows)
        for l2 in np.unique(chosen[columns]):
            same_l2 = chosen[columns] == l2
            coefficients[:, np.asarray(columns)[same_l2]] = _ridge_solve(gram, rhs[:, same_l2], l2)

    return LinearProbe(
        mean=mean,
        scale=scale,
        weights=coefficients[:-1],
        bias=coefficients[-1],
        l2=chosen,
        skip_reasons=skip_reasons,
    )


def linear_probe_metrics(
    probe: LinearProbe,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    label_names: Sequence[str],
) -> dict[str, float]:
    """Per-finding test AUROC on reader-committed labels (uncertain excluded) and the mean over
    findings where it is defined; ``test_labels[:, i]`` belongs to ``label_names[i]``."""
    num_findings = probe.l2.shape[0]
    if len(label_names) != num_findings:
        raise ValueError(
            f"linear probe: {len(label_names)} label names for a probe of {num_findings} findings"
        )
    scores = probe.scores(test_features)
    labels = _checked_labels(test_labels, scores.shape[0], "test_labels")
    if labels.shape[1] != num_findings:
        raise ValueError(
            f"linear probe: test_labels have {labels.shape[1]} findings, the probe {num_findings}; "
            "use the label columns the probe was fitted on"
        )
    targets, valid = binary_targets(labels)
    results = {}
    for j, finding in enumerate(label_names):
        if j in probe.skip_reasons:
            value = float("nan")
        else:
            value = auroc(scores[valid[:, j], j], targets[valid[:, j], j])
        results[f"linear_probe/auroc/{finding}"] = value
    defined = [v for v in results.values() if not np.isnan(v)]
    results["linear_probe/auroc_mean"] = float(np.mean(defined)) if defined else float("nan")
    return results


def _select_l2(
    design: np.ndarray,
    full_gram: np.ndarray,
    signed: np.ndarray,
    fit_rows: np.ndarray,
    held_out: np.ndarray,
    fitted: list[int],
    grid: tuple[float, ...],
) -> np.ndarray:
    """Per fitted finding, the strength with the best held-out AUROC (then lowest squared error)."""
    held_auroc = np.empty((signed.shape[1], len(grid)))
    held_error = np.empty_like(held_auroc)
    for columns in _columns_by_rows(fit_rows, fitted):
        rows = fit_rows[:, columns[0]]
        gram, rhs = _normal_equations(design, full_gram, signed[:, columns], rows)
        held_rows = np.flatnonzero(held_out[:, columns].any(axis=1))
        held_design = design[held_rows]  # copied once, scored for every strength
        for g, l2 in enumerate(grid):
            held_scores = held_design @ _ridge_solve(gram, rhs, l2)
            for k, j in enumerate(columns):
                held = held_out[held_rows, j]
                scores, target = held_scores[held, k], signed[held_rows[held], j]
                held_auroc[j, g] = auroc(scores, target > 0)
                held_error[j, g] = np.mean((scores - target) ** 2)
    return np.array([grid[np.lexsort((held_error[j], -held_auroc[j]))[0]] for j in fitted])


def _skip_reasons(targets: np.ndarray, valid: np.ndarray, choosing_l2: bool) -> dict[int, str]:
    """Finding column -> why it cannot be fitted, for columns without enough of both classes."""
    reasons = {}
    for j in range(targets.shape[1]):
        positives = int(targets[valid[:, j], j].sum())
        negatives = int(valid[:, j].sum()) - positives
        if positives == 0 or negatives == 0:
            reasons[j] = (
                f"single class in the training rows ({positives} positive, {negatives} "
                "negative or not mentioned, uncertain excluded); AUROC is undefined"
            )
        elif choosing_l2 and min(positives, negatives) < 2:
            reasons[j] = (
                f"{positives} positive and {negatives} negative training rows: choosing l2 needs "
                "at least 2 of each to hold some out; pass a single-value l2_grid to fit anyway"
            )
    return reasons


def _stratified_holdout(
    targets: np.ndarray, valid: np.ndarray, fitted: list[int], val_fraction: float, seed: int
) -> np.ndarray:
    """(N, F) mask of held-out rows: per finding and class, the first ``val_fraction`` of that
    class's committed rows in one seeded row order (at least one row, never all of them)."""
    order = np.random.default_rng(seed).permutation(targets.shape[0])
    held_out = np.zeros(targets.shape, dtype=bool)
    for j in fitted:
        for value in (0, 1):
            members = order[valid[order, j] & (targets[order, j] == value)]
            count = int(np.clip(round(val_fraction * members.size), 1, members.size - 1))
            held_out[members[:count], j] = True
    return held_out


def _columns_by_rows(rows: np.ndarray, columns: list[int]) -> list[list[int]]:
    """Groups finding columns whose row masks are identical, so they share one factorisation."""
    groups: dict[bytes, list[int]] = {}
    for j in columns:
        groups.setdefault(np.packbits(rows[:, j]).tobytes(), []).append(j)
    return list(groups.values())


def _normal_equations(
    design: np.ndarray, full_gram: np.ndarray, signed: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``design[rows].T @ design[rows]`` and ``design[rows].T @ signed[rows]``, the Gram by
    subtracting the dropped rows from ``full_gram`` when they are fewer than the kept ones."""
    rhs = design.T @ np.where(rows[:, None], signed, 0.0)  # no copy of the kept rows
    if 2 * rows.sum() >= rows.size:
        dropped = design[~rows]
        return full_gram - dropped.T @ dropped, rhs
    kept = design[rows]
    return kept.T @ kept, rhs


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, l2: float) -> np.ndarray:
    """Solves ``(gram + l2 * diag(1, ..., 1, 0)) c = rhs``; the last coefficient is the bias."""
    penalty = np.full(gram.shape[0], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    return linalg.cho_solve(linalg.cho_factor(gram + np.diag(penalty)), rhs)


def _checked_features(features: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"linear probe: {name} must be (N, D); got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"linear probe: {name} is empty (shape {x.shape}); it needs rows and dimensions")
    bad_rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
    if bad_rows.size:
        raise ValueError(
            f"linear probe: {name} contain NaN or inf in {bad_rows.size} rows "
            f"(first {bad_rows[:5].tolist()}); check the image tower's outputs"
        )
    return x


def _checked_labels(labels: np.ndarray, num_rows: int, name: str = "train_labels") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"linear probe: {name} must be (N, F) CheXpert values; got shape {y.shape}")
    if y.shape[0] != num_rows:
        raise ValueError(f"linear probe: {name} have {y.shape[0]} rows but the features {num_rows}")
    if y.shape[1] == 0:
        raise ValueError(f"linear probe: {name} have no finding columns")
    unknown = np.setdiff1d(np.unique(y), list(LABEL_VALUE_NAMES))
    if unknown.size:
        raise ValueError(
            f"linear probe: {name} hold values {unknown[:5].tolist()}; expected CheXpert values "
            "1 positive, 0 negative, -1 uncertain, -2 not mentioned"
        )
    return y


def _checked_grid(l2_grid: Sequence[float]) -> tuple[float, ...]:
    grid = tuple(float(v) for v in l2_grid)
    if not grid:
        raise ConfigError("linear probe: l2_grid is empty; give at least one ridge strength, e.g. (1.0,)")
    if not all(np.isfinite(v) and v > 0 for v in grid):
        raise ConfigError(f"linear probe: l2_grid values must be finite and > 0; got {grid}")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"linear probe: l2_grid has repeated values: {grid}")
    return grid
