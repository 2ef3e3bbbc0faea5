"""The joint law of model and data size: error(N, D) = E + A / N**alpha + B / D**beta."""

from __future__ import annotations

import dataclasses

import numpy as np

from radfm_jax.scaling.fit.inputs import (
    ArrayLike,
    ScalingFitError,
    Transform,
    require_falling_error,
    require_points,
)
from radfm_jax.scaling.fit.saturating import SaturatingFit, fit_saturating_law, law_data


@dataclasses.dataclass(frozen=True)
class JointFit(SaturatingFit):
    """error(N, D) = E + A / N**alpha + B / D**beta (Hoffmann et al. 2022, eq. 2).

    ``predict(n, d)``, ``predict_error(n, d)`` and ``log_residuals(n, d, y)`` come from
    SaturatingFit.
    """

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    transform: Transform
    loss: float

    def terms(self) -> tuple[tuple[float, float], ...]:
        return ((self.A, self.alpha), (self.B, self.beta))

    def params(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B, "beta": self.beta}


def fit_joint(
    n: ArrayLike,
    d: ArrayLike,
    y: ArrayLike,
    *,
    increasing_metric: bool = False,
    huber_delta: float = 1e-3,
    n_starts: int = 32,
    seed: int = 0,
) -> JointFit:
    """Fit L(N, D) = E + A / N**alpha + B / D**beta (N parameters, D training data).

    Minimises mean Huber(LSE(a - alpha log N, b - beta log D, e) - log y) over
    (a = log A, alpha >= 0, b = log B, beta >= 0, e = log E), as in the paper.
    """
    (ns, ds), error, transform = law_data({"n": n, "d": d}, y, increasing_metric)
    for name, values in (("n", ns), ("d", ds)):
        if len(np.unique(values)) < 3:
            raise ScalingFitError(
                f"{name} takes {len(np.unique(values))} distinct value(s); the joint law needs "
                f"at least 3 of each of n and d (use fit_power_law when only one varies)"
            )
    require_points(len(np.unique(np.stack([ns, ds], axis=1), axis=0)), 5, "E + A/N^a + B/D^b")
    require_falling_error({"n": ns, "d": ds}, error, increasing_metric)
    law = fit_saturating_law([ns, ds], error, huber_delta, n_starts, seed)
    (a, alpha), (b, beta) = law.terms
    return JointFit(
        E=law.E, A=a, alpha=alpha, B=b, beta=beta, transform=transform, loss=law.loss
    )
