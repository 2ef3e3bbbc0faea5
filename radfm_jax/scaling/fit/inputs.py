"""Checks on the sweep data a fit is given, and the error scale the laws are fitted on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from radfm_jax.errors import ConfigError

Transform = Literal["identity", "one_minus"]
ArrayLike = Sequence[float] | np.ndarray


class ScalingFitError(ConfigError):
    """Data a scaling fit cannot use: too few points, NaNs, values outside the law's domain."""


def finite_column(name: str, values: ArrayLike) -> np.ndarray:
    """values as a 1-D float64 array; a ScalingFitError when it is not one or holds NaN / inf."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ScalingFitError(f"{name} must be a 1-D array of numbers, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ScalingFitError(
            f"{name} has {bad.size} NaN or infinite value(s) (first at index {bad[0]}); "
            "drop those sweep points (e.g. failed runs) before fitting"
        )
    return array


def positive_column(name: str, values: ArrayLike) -> np.ndarray:
    """finite_column, and every value > 0 (the laws are fitted in log space)."""
    array = finite_column(name, values)
    bad = np.flatnonzero(array <= 0)
    if bad.size:
        raise ScalingFitError(
            f"{name} must be > 0 (a power law is fitted in log {name}); "
            f"index {bad[0]} is {array[bad[0]]!r}"
        )
    return array


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays; a ScalingFitError naming each length otherwise."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ScalingFitError(f"inputs must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def require_points(
    n_distinct: int, n_params: int, what: str, fixed: Mapping[str, float] | None = None
) -> None:
    """Refuse a law with at least as many free parameters as distinct points."""
    if n_distinct < n_params + 1:
        held = f" ({', '.join(sorted(fixed))} fixed)" if fixed else ""
        remedy = "add sweep points" + ("" if fixed else " or fix a parameter (e.g. fixed={'E': 0.0})")
        raise ScalingFitError(
            f"{what} has {n_params} free parameters{held} and needs at least {n_params + 1} "
            f"distinct points, got {n_distinct}; {remedy}"
        )


def error_transform(increasing_metric: bool) -> Transform:
    """How a metric becomes the error the laws model: itself, or 1 - metric when it grows."""
    return "one_minus" if increasing_metric else "identity"


def to_error(metric: ArrayLike, transform: Transform, name: str = "y") -> np.ndarray:
    """The quantity the laws model: ``metric`` itself, or ``1 - metric`` for increasing metrics."""
    values = finite_column(name, metric)
    error = 1.0 - values if transform == "one_minus" else values
    bad = np.flatnonzero(error <= 0)
    if not bad.size:
        return error
    index = bad[0]
    if transform == "one_minus":
        raise ScalingFitError(
            f"{name} must be < 1 with increasing_metric=True (the fit uses the error "
            f"1 - {name}); index {index} is {values[index]!r}. Pass fractions, not percent"
        )
    raise ScalingFitError(
        f"{name} must be > 0 (the fit is in log space); index {index} is "
        f"{values[index]!r}. For a metric that grows with scale (AUROC, recall) pass "
        "increasing_metric=True"
    )


def from_error(error: np.ndarray, transform: Transform) -> np.ndarray:
    """The metric on its own scale: the inverse of to_error."""
    return 1.0 - error if transform == "one_minus" else error


def require_falling_error(inputs: dict[str, np.ndarray], error: np.ndarray, increasing_metric: bool) -> None:
    """Refuse data whose error does not fall along any input: a law E + A x^-alpha (alpha >= 0)
    fitted to them ends at alpha = 0 and says nothing. Judged by the least-squares slopes of
    log error on the log inputs, jointly."""
    names = list(inputs)
    design = np.column_stack([np.log(inputs[name]) for name in names] + [np.ones(error.size)])
    slopes = np.linalg.lstsq(design, np.log(error), rcond=None)[0][:-1]
    if np.any(slopes < 0):
        return
    expected = "rise" if increasing_metric else "fall"
    other = "False (a loss or an error rate)" if increasing_metric else "True (AUROC, accuracy, recall)"
    shown = ", ".join(f"{name} {slope:+.3g}" for name, slope in zip(names, slopes, strict=True))
    raise ScalingFitError(
        f"the metric does not {expected} with scale along any input (slopes of log error on log "
        f"input: {shown}), as increasing_metric={increasing_metric} says it should; the fit would "
        f"end at exponent 0. Pass increasing_metric={other} if that is the metric's direction, "
        "or check the column and the sweep"
    )
