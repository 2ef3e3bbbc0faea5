"""The joint law of model and data size: error(N, D) = E + A / N**alpha + B / D**beta."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from radfm_jax.scaling.fit.inputs import (
    ArrayLike,
    ScalingFitError,
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

NAMES = (TermNames("A", "alpha"), TermNames("B", "beta"))


@dataclasses.dataclass(frozen=True)
class JointFit(SaturatingFit):
    """error(N, D) = E + A / N**alpha + B / D**beta (Hoffmann et al. 2022, eq. 2).

    Stored as fitted, in log coordinates (``log_E`` is -inf when E is fixed at 0); ``E``, ``A``
    and ``B`` are their exponentials. ``fixed`` holds the parameters that were not fitted.
    ``predict(n, d)``, ``predict_error(n, d)`` and ``log_residuals(n, d, y)`` come from
    SaturatingFit.
    """

    log_E: float
    log_A: float
    alpha: float
    log_B: float
    beta: float
    transform: Transform
    loss: float
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def A(self) -> float:
        return float(np.exp(self.log_A))

    @property
    def B(self) -> float:
        return float(np.exp(self.log_B))

    def log_terms(self) -> tuple[tuple[float, float], ...]:
        return ((self.log_A, self.alpha), (self.log_B, self.beta))

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B, "beta": self.beta}

    def log_params(self) -> dict[str, float]:
        return {"log_E": self.log_E, "log_A": self.log_A, "log_B": self.log_B}


def fit_joint(
    n: ArrayLike,
    d: ArrayLike,
    y: ArrayLike,
    *,
    increasing_metric: bool = False,
    fixed: Mapping[str, float] | None = None,
    huber_delta: float = 1e-3,
    n_starts: int = 32,
    seed: int = 0,
) -> JointFit:
    """Fit L(N, D) = E + A / N**alpha + B / D**beta (N parameters, D training data).

    Minimises mean Huber(LSE(a - alpha log N, b - beta log D, e) - log y) over
    (a = log A, alpha >= 0, b = log B, beta >= 0, e = log E), as in the paper. ``fixed`` holds
    named parameters at given values (e.g. ``{"E": 0.0}``), as in fit_power_law.
    """
    (ns, ds), error, transform = law_data({"n": n, "d": d}, y, increasing_metric)
    for name, values in (("n", ns), ("d", ds)):
        if len(np.unique(values)) < 3:
            raise ScalingFitError(
                f"{name} takes {len(np.unique(values))} distinct value(s); the joint law needs "
                f"at least 3 of each of n and d (use fit_power_law when only one varies)"
            )
    fixed_theta = fixed_log_theta(fixed, NAMES, error)
    n_points = len(np.unique(np.stack([ns, ds], axis=1), axis=0))
    require_points(n_points, 5 - len(fixed_theta), "E + A/N^a + B/D^b", fixed)
    require_falling_error({"n": ns, "d": ds}, error, increasing_metric)
    law = fit_saturating_law([ns, ds], error, NAMES, fixed_theta, huber_delta, n_starts, seed)
    (log_a, alpha), (log_b, beta) = law.terms
    return JointFit(
        log_E=law.log_E, log_A=log_a, alpha=alpha, log_B=log_b, beta=beta, transform=transform,
        loss=law.loss, fixed={name: float(value) for name, value in (fixed or {}).items()},
    )
