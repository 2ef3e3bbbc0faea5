"""Bootstrap percentile intervals of fitted parameters, and prediction intervals from the refits."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np

from radfm_jax.scaling.fit.inputs import ArrayLike, ScalingFitError
from radfm_jax.scaling.fit.isoflop import ExtrapolationWarning
from radfm_jax.scaling.fit.joint import JointFit
from radfm_jax.scaling.fit.power_law import PowerLawFit


class Fitted(Protocol):
    def params(self) -> dict[str, float]: ...


@dataclasses.dataclass(frozen=True, eq=False)
class BootstrapResult(Mapping[str, tuple[float, float]]):
    """Percentile intervals {fitted parameter: (low, high)}. Parameters the fits held fixed have
    no interval: they are in ``fixed`` instead. ``failed`` resamples could not be fitted and were
    drawn again (``last_failure`` says why the last one could not); ``fits`` keeps the
    ``n_boot`` refits for prediction intervals (``extrapolate``)."""

    intervals: dict[str, tuple[float, float]]
    fits: tuple[Any, ...]
    ci: float
    failed: int = 0
    last_failure: str = ""
    fixed: dict[str, float] = dataclasses.field(default_factory=dict)

    def __getitem__(self, name: str) -> tuple[float, float]:
        if name in self.fixed:
            raise KeyError(f"{name} was fixed at {self.fixed[name]:.6g}, not fitted: it has no interval")
        return self.intervals[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.intervals)

    def __len__(self) -> int:
        return len(self.intervals)

    def failure_note(self) -> str:
        """One line on the failed resamples, for printing beside the intervals ("" if none)."""
        if not self.failed:
            return ""
        share = self.failed / (self.failed + len(self.fits))
        return (f"{self.failed} of {self.failed + len(self.fits)} resamples ({share:.0%}) could not "
                f"be fitted and were drawn again; last: {self.last_failure}")


def _quantiles(ci: float) -> tuple[float, float]:
    return (1.0 - ci) / 2.0, (1.0 + ci) / 2.0


def _refit(fit_fn: Callable[..., Fitted], columns: list[np.ndarray]) -> Fitted:
    """One refit; a ScalingFitError when the resample cannot be fitted or its fit is not finite."""
    with warnings.catch_warnings():
        # A refit's extrapolated IsoFLOP optimum is the resample's business; the fit of the
        # data itself warns.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        fit = fit_fn(*columns)
    bad = sorted(name for name, value in fit.params().items() if not np.isfinite(value))
    if bad:
        raise ScalingFitError(f"the refit's {bad} are not finite")
    return fit


def bootstrap(
    fit_fn: Callable[..., Fitted],
    *arrays: ArrayLike,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Resample the sweep points with replacement, refit with ``fit_fn(*resampled_arrays)``, and
    return percentile intervals of every fitted entry of ``fit.params()`` (exponents included;
    parameters a fit holds fixed, its ``fixed``, get none).

    Resamples that cannot be fitted (the fit raises ScalingFitError: too few distinct points
    left, no falling trend, a diverged fit) are counted in ``failed`` and drawn again; if more
    than ``n_boot`` fail the data set is too small to bootstrap and an error is raised.
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
    failed, last_failure = 0, ""
    while len(fits) < n_boot:
        rows = rng.integers(0, n_points, size=n_points)
        try:
            fits.append(_refit(fit_fn, [column[rows] for column in columns]))
        except ScalingFitError as error:
            failed, last_failure = failed + 1, str(error)
            if failed > n_boot:
                raise ScalingFitError(
                    f"{failed} bootstrap resamples of {n_points} points could not be fitted "
                    f"(last: {error}); add sweep points"
                ) from error
    fixed = dict(getattr(fits[0], "fixed", {}))
    samples = [fit.params() for fit in fits]
    low, high = _quantiles(ci)
    intervals = {
        name: (
            float(np.quantile([s[name] for s in samples], low)),
            float(np.quantile([s[name] for s in samples], high)),
        )
        for name in samples[0]
        if name not in fixed
    }
    return BootstrapResult(
        intervals=intervals, fits=tuple(fits), ci=ci, failed=failed, last_failure=last_failure,
        fixed=fixed,
    )


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
