"""The law of one variable: error(x) = E + A * x**(-alpha), x being parameters, data or compute."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from radfm_jax.scaling.fit.inputs import (
    ArrayLike,
    Transform,
    require_falling_error,
    require_points,
)
from radfm_jax.scaling.fit.saturating import (
    SaturatingFit,
    TermNames,
    fit_saturating_law,
    fixed_log_theta,
    law_data,
)

NAMES = (TermNames("A", "alpha"),)


@dataclasses.dataclass(frozen=True)
class PowerLawFit(SaturatingFit):
    """error(x) = E + A * x**(-alpha), where error = metric ("identity") or 1 - metric ("one_minus").

    Stored as fitted, in log coordinates (``log_E`` is -inf when E is fixed at 0); ``E`` and
    ``A`` are their exponentials. ``fixed`` holds the parameters that were not fitted. ``loss``
    is the mean Huber loss of the log residuals at the optimum. ``predict(x)``,
    ``predict_error(x)`` and ``log_residuals(x, y)`` come from SaturatingFit.
    """

    log_E: float
    log_A: float
    alpha: float
    transform: Transform
    loss: float
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def A(self) -> float:
        return float(np.exp(self.log_A))

    def log_terms(self) -> tuple[tuple[float, float], ...]:
        return ((self.log_A, self.alpha),)

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha}

    def log_params(self) -> dict[str, float]:
        return {"log_E": self.log_E, "log_A": self.log_A}


def fit_power_law(
    x: ArrayLike,
    y: ArrayLike,
    *,
    increasing_metric: bool = False,
    fixed: Mapping[str, float] | None = None,
    huber_delta: float = 1e-3,
    n_starts: int = 32,
    seed: int = 0,
) -> PowerLawFit:
    """Fit metric = E + A * x**(-alpha) (or 1 - metric = ... with ``increasing_metric``).

    x > 0 is parameters, data or compute. Minimises mean Huber(log(E + A x^-alpha) - log y) over
    (log A, alpha >= 0, log E) by L-BFGS-B from ``n_starts`` points of an initialisation grid (a
    random subset drawn with ``seed`` when the grid is larger); the best optimum is kept.
    ``fixed`` holds named parameters at given values (e.g. ``{"E": 0.0}``, or E from another
    fit), so that fewer points suffice; the law needs one more distinct x than it has free
    parameters.
    """
    (xs,), error, transform = law_data({"x": x}, y, increasing_metric)
    fixed_theta = fixed_log_theta(fixed, NAMES, error)
    require_points(len(np.unique(xs)), 3 - len(fixed_theta), "E + A * x^-alpha", fixed)
    require_falling_error({"x": xs}, error, increasing_metric)
    law = fit_saturating_law([xs], error, NAMES, fixed_theta, huber_delta, n_starts, seed)
    ((log_a, alpha),) = law.terms
    return PowerLawFit(
        log_E=law.log_E, log_A=log_a, alpha=alpha, transform=transform, loss=law.loss,
        fixed={name: float(value) for name, value in (fixed or {}).items()},
    )
