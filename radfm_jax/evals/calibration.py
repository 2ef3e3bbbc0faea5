"""Calibration of binary per-finding probabilities: is "0.8" right 80 % of the time?

* :func:`reliability_curve` / :func:`ece`: binned mean predicted probability vs observed
  frequency, and their count-weighted mean absolute gap (expected calibration error). Equal-width
  bins are the usual definition; equal-mass (quantile) bins put the same number of cases in every
  bin, which suits findings whose probabilities crowd near 0.
* :func:`brier`, :func:`nll`: proper scoring rules, which (unlike ECE) no binning can game.
* :func:`fit_temperature` / :func:`apply_temperature`: temperature scaling, one scalar fitted on
  the validation split that rescales logits without changing their ranking (AUROC unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from radfm_jax.evals.metrics import as_binary_inputs

ArrayLike = np.ndarray | Sequence[float]
Strategy = Literal["width", "mass"]


class ReliabilityCurve(NamedTuple):
    """Per bin: mean predicted probability, observed positive frequency (``nan`` in empty bins)
    and number of cases."""

    mean_predicted: np.ndarray
    observed_frequency: np.ndarray
    counts: np.ndarray


def _probabilities(
    probs: ArrayLike, targets: ArrayLike, caller: str
) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_binary_inputs(probs, targets, caller)
    if p.size == 0:
        raise ValueError(f"{caller}: no probabilities given")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError(f"{caller}: probabilities must lie in [0, 1]")
    return p, t


def _bin_index(p: np.ndarray, n_bins: int, strategy: Strategy) -> np.ndarray:
    """Bin of each probability. Width: ``[k/n, (k+1)/n)`` with 1.0 in the last bin. Mass: edges at
    the ``k/n`` quantiles of ``p`` (equal counts up to ties; a tie on an edge goes up)."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins}")
    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        return np.minimum(np.searchsorted(edges, p, side="right") - 1, n_bins - 1)
    if strategy == "mass":
        inner_edges = np.quantile(p, np.arange(1, n_bins) / n_bins)
        return np.searchsorted(inner_edges, p, side="right")
    raise ValueError(f"strategy must be 'width' or 'mass'; got {strategy!r}")


def reliability_curve(
    probs: ArrayLike, targets: ArrayLike, n_bins: int = 15, strategy: Strategy = "width"
) -> ReliabilityCurve:
    """Mean predicted probability, observed frequency and count in each of ``n_bins`` bins
    (``strategy`` as in :func:`ece`); the points of a reliability diagram."""
    p, t = _probabilities(probs, targets, "reliability_curve")
    bins = _bin_index(p, n_bins, strategy)
    counts = np.bincount(bins, minlength=n_bins)
    filled = counts > 0
    mean_predicted = np.full(n_bins, np.nan)
    observed = np.full(n_bins, np.nan)
    mean_predicted[filled] = np.bincount(bins, weights=p, minlength=n_bins)[filled] / counts[filled]
    observed[filled] = np.bincount(bins, weights=t, minlength=n_bins)[filled] / counts[filled]
    return ReliabilityCurve(mean_predicted, observed, counts)


def ece(
    probs: ArrayLike, targets: ArrayLike, n_bins: int = 15, strategy: Strategy = "width"
) -> float:
    """Expected calibration error: ``sum_b (n_b / N) |mean predicted_b - observed frequency_b|``.

    ``strategy="width"``: equal-width bins on [0, 1]; ``"mass"``: equal-mass (quantile) bins.
    """
    curve = reliability_curve(probs, targets, n_bins, strategy)
    filled = curve.counts > 0
    gaps = np.abs(curve.mean_predicted[filled] - curve.observed_frequency[filled])
    return float(np.sum(curve.counts[filled] * gaps) / np.sum(curve.counts))


def brier(probs: ArrayLike, targets: ArrayLike) -> float:
    """Brier score: the mean squared difference between probability and 0/1 outcome."""
    p, t = _probabilities(probs, targets, "brier")
    return float(np.mean((p - t) ** 2))


def nll(probs: ArrayLike, targets: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy. Probabilities are clipped to ``[eps, 1 - eps]`` so an exact 0
    or 1 (common from float32 sigmoids, whose resolution near 1 is ~6e-8) costs a large but
    finite amount instead of infinity."""
    p, t = _probabilities(probs, targets, "nll")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(t, np.log(p), np.log1p(-p))))


def apply_temperature(logits: ArrayLike, temperature: float) -> np.ndarray:
    """Probabilities ``sigmoid(logits / temperature)``."""
    if not temperature > 0.0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(
    logits: ArrayLike, targets: ArrayLike, bounds: tuple[float, float] = (1e-3, 1e3)
) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``sigmoid(logits / T)``.

    Fit it on the validation split. The search runs over ``log T`` within ``bounds`` (bounded
    Brent; the NLL is unimodal in ``T``); ``T > 1`` softens over-confident logits. Perfectly
    separable logits drive ``T`` to the lower bound.

    Raises:
      ValueError: bad inputs, bad bounds, or only one class present (no finite optimum).
    """
    z, t = as_binary_inputs(logits, targets, "fit_temperature")
    if t.all() or not t.any():
        raise ValueError("fit_temperature needs both positives and negatives")
    low, high = bounds
    if not 0.0 < low < high:
        raise ValueError(f"fit_temperature: bounds must satisfy 0 < low < high; got {bounds}")

    def loss(log_temperature: float) -> float:
        x = z * np.exp(-log_temperature)
        return float(np.mean(np.logaddexp(0.0, x) - t * x))  # BCE from logits, overflow-free

    result = minimize_scalar(
        loss, bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(result.x))
