"""The saturating power laws error = E + sum_k A_k * x_k**(-e_k), fitted robustly in log space.

As in Hoffmann et al. 2022 ("Chinchilla", approach 3) the law is written in log-sum-exp form,
log error = LSE(log A_k - e_k * log x_k, log E), and its parameters minimise the mean Huber loss
of the log residuals with L-BFGS-B, started from a grid of initialisations; the best optimum
wins. The Huber loss (small delta) makes the fit behave like least absolute deviations, so one
diverged sweep point barely moves the exponents.

The fitted law is kept in the same log coordinates (log E, log A_k, e_k) and predicts from them,
so a steep exponent never overflows a coefficient on the way. Any parameter may be held fixed
(``fixed={"E": 0.0}``, or E from another fit), which leaves fewer to determine from few points.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import math
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

# exp() of anything larger is not a float64: a fit whose coefficient gets there has run off.
LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


@dataclasses.dataclass(frozen=True)
class TermNames:
    """The public names of one term's coefficient and exponent, e.g. ("A", "alpha")."""

    coef: str
    exponent: str


@dataclasses.dataclass(frozen=True)
class SaturatingLaw:
    """A fitted law in log coordinates: log E (-inf when E = 0), (log A_k, e_k) per input in
    input order, and the mean Huber loss."""

    log_E: float
    terms: tuple[tuple[float, float], ...]
    loss: float


class SaturatingFit(abc.ABC):
    """Predictions of a fitted law from ``log_E``, its ``log_terms()`` and its ``transform``;
    the methods take one input array per term (x for a power law, (n, d) for the joint law).
    ``fixed`` names the parameters that were held at given values rather than fitted."""

    log_E: float
    transform: Transform
    fixed: Mapping[str, float]

    @abc.abstractmethod
    def log_terms(self) -> tuple[tuple[float, float], ...]:
        """(log A_k, e_k) of each term, in input order."""

    @property
    def E(self) -> float:
        return float(np.exp(self.log_E))

    def predict_error(self, *inputs: ArrayLike) -> np.ndarray:
        """E + sum_k A_k * x_k**(-e_k) on the fitted (error) scale, summed from log terms."""
        error = self.E
        for (log_coef, exponent), x in zip(self.log_terms(), inputs, strict=True):
            error = error + np.exp(log_coef - exponent * np.log(np.asarray(x, np.float64)))
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


def fixed_log_theta(
    fixed: Mapping[str, float] | None, names: Sequence[TermNames], error: np.ndarray
) -> dict[int, float]:
    """Validated fixed parameters as {index in theta: value in log coordinates}.

    theta = (log A_1, e_1, ..., log A_K, e_K, log E); E may be 0 (no floor), coefficients must
    be > 0 and exponents >= 0. A fixed E must lie below every observed error, which it bounds.
    """
    slots = {name: 2 * k + offset for k, term in enumerate(names)
             for offset, name in enumerate((term.coef, term.exponent))}
    slots["E"] = 2 * len(names)
    unknown = sorted(set(fixed or {}) - set(slots))
    if unknown:
        raise ScalingFitError(f"cannot fix {unknown}: this law's parameters are {sorted(slots)}")
    theta = {}
    for name, value in (fixed or {}).items():
        value = float(value)
        _check_fixed_value(name, value, is_exponent=name in {t.exponent for t in names})
        if name == "E" and value >= error.min():
            raise ScalingFitError(
                f"fixed E = {value:.4g} is not below the smallest observed error "
                f"{error.min():.4g}; the law E + ... can never reach it"
            )
        theta[slots[name]] = value if slots[name] % 2 else _log(value)  # odd slots: exponents
    if len(theta) == len(slots):
        raise ScalingFitError(f"every parameter of the law is fixed ({sorted(slots)}); nothing to fit")
    return theta


def _check_fixed_value(name: str, value: float, is_exponent: bool) -> None:
    if not math.isfinite(value):
        raise ScalingFitError(f"fixed {name} must be a finite number, got {value!r}")
    if is_exponent and value < 0:
        raise ScalingFitError(f"fixed {name} must be >= 0 (a falling law), got {value!r}")
    if name == "E" and value < 0:
        raise ScalingFitError(f"fixed E must be >= 0 (0 = no floor), got {value!r}")
    if not is_exponent and name != "E" and value <= 0:
        raise ScalingFitError(f"fixed {name} must be > 0 (a coefficient), got {value!r}")


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def fit_saturating_law(
    inputs: Sequence[np.ndarray],
    error: np.ndarray,
    names: Sequence[TermNames],
    fixed_theta: Mapping[int, float],
    huber_delta: float,
    n_starts: int,
    seed: int,
) -> SaturatingLaw:
    """The law with one term per input that best fits ``error`` (exponents >= 0), with the
    parameters in ``fixed_theta`` (see fixed_log_theta) held at their values."""
    logs = np.log(np.stack(inputs))
    # Centring each log x decorrelates log A from its exponent (mapped back below); a term whose
    # A is fixed stays uncentred, so that fixing log A fixes one coordinate.
    centres = np.array([0.0 if 2 * k in fixed_theta else logs[k].mean() for k in range(len(names))])
    theta, loss = _fit_lse(
        logs - centres[:, None], np.log(error), fixed_theta, huber_delta, n_starts, seed
    )
    terms = tuple(
        _uncentred_term(theta[2 * k], theta[2 * k + 1], centres[k], term)
        for k, term in enumerate(names)
    )
    return SaturatingLaw(log_E=float(theta[-1]), terms=terms, loss=loss)


def _uncentred_term(
    centred_coef: float, exponent: float, centre: float, names: TermNames
) -> tuple[float, float]:
    """(log A, e) from the centred coordinate log A - e * centre; a ScalingFitError when A is
    beyond float64, where an exponent has run off to make the term fit only the smallest input."""
    log_coef = float(centred_coef + exponent * centre)
    if log_coef > LOG_FLOAT_MAX:
        raise ScalingFitError(
            f"the fit diverged: {names.exponent} ran to {exponent:.3g} and log {names.coef} to "
            f"{log_coef:.4g} ({names.coef} overflows float64), i.e. the term only fits the "
            f"smallest input; these points do not determine it. Add sweep points or fix a "
            f"parameter (fixed={{'{names.exponent}': ...}} or fixed={{'E': ...}})"
        )
    return log_coef, float(exponent)


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

    theta = (c_1, e_1, ..., c_K, e_K, log E); logs has shape (K, n); log E = -inf (E fixed at 0)
    drops the floor. Dividing by delta keeps the minimiser and gives gradients of order one,
    which L-BFGS-B's default tolerances expect.
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


def _start_grid(
    log_y: np.ndarray, fixed_theta: Mapping[int, float], n_terms: int, n_starts: int, seed: int
) -> np.ndarray:
    """Initialisations in centred coordinates: each term and E as a fraction of the observed y;
    fixed coordinates take their value in every start."""
    if n_starts < 1:
        raise ScalingFitError(f"n_starts must be >= 1, got {n_starts}")
    log_coef = np.median(log_y) + np.log([0.1, 0.5, 1.0])
    exponents = (0.1, 0.3, 0.6, 1.0)
    log_floor = log_y.min() + np.log([0.1, 0.5, 0.9])
    axes = [*([log_coef, exponents] * n_terms), log_floor]
    axes = [[fixed_theta[i]] if i in fixed_theta else values for i, values in enumerate(axes)]
    grid = np.array(list(itertools.product(*axes)))
    if n_starts < len(grid):
        grid = grid[np.random.default_rng(seed).choice(len(grid), n_starts, replace=False)]
    return grid


def _fit_lse(
    logs: np.ndarray,
    log_y: np.ndarray,
    fixed_theta: Mapping[int, float],
    delta: float,
    n_starts: int,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Best (theta, mean Huber loss) over the starts, optimising only the coordinates not in
    ``fixed_theta``; exponents are constrained to be >= 0."""
    if delta <= 0:
        raise ScalingFitError(f"huber_delta must be > 0, got {delta}")
    n_terms = logs.shape[0]
    free = np.array([i not in fixed_theta for i in range(2 * n_terms + 1)])
    bounds = [bound for bound, keep in zip([(None, None), (0.0, None)] * n_terms + [(None, None)], free) if keep]

    def objective(values: np.ndarray, theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta[free] = values
        value, grad = _lse_objective(theta, logs, log_y, delta)
        return value, grad[free]

    best_theta, best_value = None, np.inf
    # L-BFGS-B's tiny BLAS calls run ~10x slower when OpenBLAS wakes its thread pool for them.
    with threadpool_limits(1, user_api="blas"):
        for start in _start_grid(log_y, fixed_theta, n_terms, n_starts, seed):
            result = minimize(
                objective, start[free], args=(start.copy(),), jac=True, method="L-BFGS-B", bounds=bounds
            )
            if np.isfinite(result.fun) and result.fun < best_value:
                best_theta, best_value = start.copy(), float(result.fun)
                best_theta[free] = result.x
    if best_theta is None:
        raise ScalingFitError("every start of the fit diverged; check the data for outliers")
    return best_theta, best_value * delta
