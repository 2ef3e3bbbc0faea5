"""The law of one variable: error(x) = E + A * x**(-alpha), x being parameters, data or compute."""

from __future__ import annotations

import dataclasses

import numpy as np

from radfm_jax.scaling.fit.inputs import ArrayLike, Transform, require_falling_error, require_points
from radfm_jax.scaling.fit.saturating import SaturatingFit, fit_saturating_law, law_data


@dataclasses.dataclass(frozen=True)
class PowerLawFit(SaturatingFit):
    """error(x) = E + A * x**(-alpha), where error = metric ("identity") or 1 - metric ("one_minus").

    ``loss`` is the mean Huber loss of the log residuals at the optimum. ``predict(x)``,
    ``predict_error(x)`` and ``log_residuals(x, y)`` come from SaturatingFit.
    """

    E: float
    A: float
    alpha: float
    transform: Transform
    loss: float

    def terms(self) -> tuple[tuple[float, float], ...]:
        return ((self.A, self.alpha),)

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha}


def fit_power_law(
    x: ArrayLike,
    y: ArrayLike,
    *,
    increasing_metric: bool = False,
    huber_delta: float = 1e-3,
    n_starts: int = 32,
    seed: int = 0,
) -> PowerLawFit:
    """Fit metric = E + A * x**(-alpha) (or 1 - metric = ... with ``increasing_metric``).

    x > 0 is parameters, data or compute. Minimises mean Huber(log(E + A x^-alpha) - log y) over
    (log A, alpha >= 0, log E) by L-BFGS-B from ``n_starts`` points of an initialisation grid (a
    random subset drawn with ``seed`` when the grid is larger); the best optimum is kept.
    """
    (xs,), error, transform = law_data({"x": x}, y, increasing_metric)
    require_points(len(np.unique(xs)), 3, "E + A * x^-alpha")
    require_falling_error({"x": xs}, error, increasing_metric)
    law = fit_saturating_law([xs], error, huber_delta, n_starts, seed)
    ((a, alpha),) = law.terms
    return PowerLawFit(E=law.E, A=a, alpha=alpha, transform=transform, loss=law.loss)
