"""The saturating power laws error = E + sum_k A_k * x_k**(-e_k), fitted robustly in log space.

As in Hoffmann et al. 2022 ("Chinchilla", approach 3) the law is written in log-sum-exp form,
log error = LSE(log A_k - e_k * log x_k, log E), and its parameters minimise the mean Huber loss
of the log residuals with L-BFGS-B, started from a grid of initialisations; the best optimum
wins. The Huber loss (small delta) makes the fit behave like least absolute deviations, so one
diverged sweep point barely moves the exponents.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from radfm_jax.scaling.fit.inputs import (
    ArrayLike,
    ScalingFitError,
    Transform,
    error_transform,
    from_error,
    positive_column,
    same_length,
    to_error,
)


@dataclasses.dataclass(frozen=True)
class SaturatingLaw:
    """A fitted law: the floor E, (A_k, e_k) per input in input order, the mean Huber loss."""

    E: float
    terms: tuple[tuple[float, float], ...]
    loss: float


class SaturatingFit(abc.ABC):
    """Predictions of a fitted law from its floor ``E``, its ``terms()`` and its ``transform``;
    the methods take one input array per term (x for a power law, (n, d) for the joint law)."""

    E: float
    transform: Transform

    @abc.abstractmethod
    def terms(self) -> tuple[tuple[float, float], ...]:
        """(A_k, e_k) of each term, in input order."""

    def predict_error(self, *inputs: ArrayLike) -> np.ndarray:
        """E + sum_k A_k * x_k**(-e_k) on the fitted (error) scale."""
        error = self.E
        for (coef, exponent), x in zip(self.terms(), inputs, strict=True):
            error = error + np.exp(np.log(coef) - exponent * np.log(np.asarray(x, np.float64)))
        return error

    def predict(self, *inputs: ArrayLike) -> np.ndarray:
        """The metric on its original scale (1 - error for increasing metrics)."""
        return from_error(self.predict_error(*inputs), self.transform)

    def log_residuals(self, *inputs_and_y: ArrayLike) -> np.ndarray:
        """log(predicted error) - log(observed error) at (inputs..., y): what the fit made small."""
        *inputs, y = inputs_and_y
        return np.log(self.predict_error(*inputs)) - np.log(to_error(y, self.transform))


def law_data(
    inputs: Mapping[str, ArrayLike], y: ArrayLike, increasing_metric: bool
) -> tuple[list[np.ndarray], np.ndarray, Transform]:
    """The named inputs checked (> 0), the error to fit and its transform; all of one length."""
    columns = [positive_column(name, values) for name, values in inputs.items()]
    transform = error_transform(increasing_metric)
    error = to_error(y, transform)
    same_length(**dict(zip(inputs, columns, strict=True)), y=error)
    return columns, error, transform


def fit_saturating_law(
    inputs: Sequence[np.ndarray], error: np.ndarray, huber_delta: float, n_starts: int, seed: int
) -> SaturatingLaw:
    """The law with one term per input that best fits ``error`` (exponents >= 0)."""
    logs = np.log(np.stack(inputs))
    # Centring each log x decorrelates log A from its exponent; A is mapped back below.
    centres = logs.mean(axis=1)
    theta, loss = _fit_lse(logs - centres[:, None], np.log(error), huber_delta, n_starts, seed)
    log_coefs, exponents = theta[0:-1:2], theta[1:-1:2]
    terms = tuple(
        (float(np.exp(log_coef + exponent * centre)), float(exponent))
        for log_coef, exponent, centre in zip(log_coefs, exponents, centres, strict=True)
    )
    return SaturatingLaw(E=float(np.exp(theta[-1])), terms=terms, loss=loss)


def _huber(residual: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and its derivative: r^2 / 2 for |r| <= delta, delta * (|r| - delta / 2) beyond."""
    small = np.abs(residual) <= delta
    value = np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta))
    slope = np.where(small, residual, delta * np.sign(residual))
    return value, slope


def _lse_objective(
    theta: np.ndarray, logs: np.ndarray, log_y: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Mean Huber loss / delta of log residuals for log L = LSE(c_k - e_k * logs_k, log E).

    theta = (c_1, e_1, ..., c_K, e_K, log E); logs has shape (K, n). Dividing by delta keeps the
    minimiser and gives gradients of order one, which L-BFGS-B's default tolerances expect.
    """
    k, n = logs.shape
    coef, expo = theta[0 : 2 * k : 2], theta[1 : 2 * k : 2]
    terms = np.vstack([coef[:, None] - expo[:, None] * logs, np.full((1, n), theta[-1])])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    weights /= total
    value, slope = _huber(top + np.log(total) - log_y, delta)
    scale = 1.0 / (n * delta)
    grad = np.empty_like(theta)
    grad[0 : 2 * k : 2] = (weights[:k] * slope).sum(axis=1) * scale
    grad[1 : 2 * k : 2] = -(weights[:k] * logs * slope).sum(axis=1) * scale
    grad[-1] = (weights[k] * slope).sum() * scale
    return float(value.sum() * scale), grad


def _start_grid(log_y: np.ndarray, n_terms: int, n_starts: int, seed: int) -> np.ndarray:
    """Initialisations in centred coordinates: each term and E as a fraction of the observed y."""
    if n_starts < 1:
        raise ScalingFitError(f"n_starts must be >= 1, got {n_starts}")
    log_coef = np.median(log_y) + np.log([0.1, 0.5, 1.0])
    exponents = (0.1, 0.3, 0.6, 1.0)
    log_floor = log_y.min() + np.log([0.1, 0.5, 0.9])
    grid = np.array(list(itertools.product(*([log_coef, exponents] * n_terms), log_floor)))
    if n_starts < len(grid):
        grid = grid[np.random.default_rng(seed).choice(len(grid), n_starts, replace=False)]
    return grid


def _fit_lse(
    logs: np.ndarray, log_y: np.ndarray, delta: float, n_starts: int, seed: int
) -> tuple[np.ndarray, float]:
    """Best (theta, mean Huber loss) over the starts; exponents are constrained to be >= 0."""
    if delta <= 0:
        raise ScalingFitError(f"huber_delta must be > 0, got {delta}")
    n_terms = logs.shape[0]
    bounds = [(None, None), (0.0, None)] * n_terms + [(None, None)]
    best_theta, best_value = None, np.inf
    # L-BFGS-B's tiny BLAS calls run ~10x slower when OpenBLAS wakes its thread pool for them.
    with threadpool_limits(1, user_api="blas"):
        for start in _start_grid(log_y, n_terms, n_starts, seed):
            result = minimize(
                _lse_objective, start, args=(logs, log_y, delta), jac=True,
                method="L-BFGS-B", bounds=bounds,
            )
            if np.isfinite(result.fun) and result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)
    if best_theta is None:
        raise ScalingFitError("every start of the fit diverged; check the data for outliers")
    return best_theta, best_value * delta
