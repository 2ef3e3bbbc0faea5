"""Scaling-law fits: saturating power laws, the joint N-D law, IsoFLOP optima, bootstrap intervals.

The power laws follow Hoffmann et al. 2022 ("Chinchilla", approach 3): see saturating.py for
the robust log-space fit they share. Metrics that grow with scale (AUROC, recall) are fitted
through their error, ``1 - metric``, which falls towards an irreducible floor E like a loss
does; predictions are returned on the metric's own scale. The laws are fitted and kept in log
coordinates (log E, log A, log B), and any of their parameters can be held fixed (``fixed=``).

One module per kind of fit; this package is where callers import them from.
"""

from radfm_jax.scaling.fit.bootstrap import BootstrapResult, bootstrap, extrapolate
from radfm_jax.scaling.fit.envelopes import best_per_value, compute_frontier
from radfm_jax.scaling.fit.inputs import ArrayLike, ScalingFitError, Transform, to_error
from radfm_jax.scaling.fit.isoflop import (
    ExtrapolationWarning,
    IsoFlopBudget,
    IsoFlopResult,
    group_budgets,
    isoflop_optimum,
)
from radfm_jax.scaling.fit.joint import JointFit, fit_joint
from radfm_jax.scaling.fit.power_law import PowerLawFit, fit_power_law

__all__ = [
    "ArrayLike",
    "BootstrapResult",
    "ExtrapolationWarning",
    "IsoFlopBudget",
    "IsoFlopResult",
    "JointFit",
    "PowerLawFit",
    "ScalingFitError",
    "Transform",
    "best_per_value",
    "bootstrap",
    "compute_frontier",
    "extrapolate",
    "fit_joint",
    "fit_power_law",
    "group_budgets",
    "isoflop_optimum",
    "to_error",
]
