"""Bootstrap percentile intervals of fitted parameters, and prediction intervals from the refits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np

from radfm_jax.scaling.fit.inputs import ArrayLike, ScalingFitError
from radfm_jax.scaling.fit.joint import JointFit
from radfm_jax.scaling.fit.power_law import PowerLawFit


class Fitted(Protocol):
    def params(self) -> dict[str, float]: ...


@dataclasses.dataclass(frozen=True, eq=False)
class BootstrapResult(Mapping[str, tuple[float, float]]):
    """Percentile intervals {parameter: (low, high)}; ``fits`` keeps every refit for prediction
    intervals (``extrapolate``)."""

    intervals: dict[str, tuple[float, float]]
    fits: tuple[Any, ...]
    ci: float

    def __getitem__(self, name: str) -> tuple[float, float]:
        return self.intervals[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.intervals)

    def __len__(self) -> int:
        return len(self.intervals)


def _quantiles(ci: float) -> tuple[float, float]:
    return (1.0 - ci) / 2.0, (1.0 + ci) / 2.0


def bootstrap(
    fit_fn: Callable[..., Fitted],
    *arrays: ArrayLike,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Resample the sweep points with replacement, refit with ``fit_fn(*resampled_arrays)``, and
    return percentile intervals of every entry of ``fit.params()`` (exponents included).

    Resamples the fit rejects (e.g. too few distinct points left) are drawn again; if more than
    ``n_boot`` are rejected the data set is too small to bootstrap and an error is raised.
    """
    if not 0.0 < ci < 1.0:
        raise ScalingFitError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 2:
        raise ScalingFitError(f"n_boot must be >= 2, got {n_boot}")
    columns = [np.asarray(array) for array in arrays]
    if not columns or len({len(c) for c in columns}) != 1:
        raise ScalingFitError("bootstrap needs one or more data arrays of the same length")
    n_points = len(columns[0])
    rng = np.random.default_rng(seed)
    fits: list[Fitted] = []
    rejected = 0
    while len(fits) < n_boot:
        rows = rng.integers(0, n_points, size=n_points)
        try:
            fits.append(fit_fn(*(column[rows] for column in columns)))
        except ScalingFitError as error:
            rejected += 1
            if rejected > n_boot:
                raise ScalingFitError(
                    f"{rejected} bootstrap resamples of {n_points} points could not be fitted "
                    f"(last: {error}); add sweep points"
                ) from error
    samples = [fit.params() for fit in fits]
    low, high = _quantiles(ci)
    intervals = {
        name: (
            float(np.quantile([s[name] for s in samples], low)),
            float(np.quantile([s[name] for s in samples], high)),
        )
        for name in samples[0]
    }
    return BootstrapResult(intervals=intervals, fits=tuple(fits), ci=ci)


def extrapolate(
    fit: PowerLawFit | JointFit,
    x_new: ArrayLike | tuple[ArrayLike, ArrayLike],
    boot: BootstrapResult,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, low, high) at ``x_new`` (a tuple ``(n, d)`` for a ``JointFit``): the point
    prediction of ``fit`` and percentile bounds of the bootstrap refits' predictions."""
    inputs = tuple(x_new) if isinstance(fit, JointFit) else (x_new,)
    prediction = fit.predict(*inputs)
    samples = np.stack([refit.predict(*inputs) for refit in boot.fits])
    low, high = np.quantile(samples, _quantiles(boot.ci), axis=0)
    return prediction, low, high
