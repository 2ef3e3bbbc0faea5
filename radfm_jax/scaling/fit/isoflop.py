"""IsoFLOP analysis (Hoffmann et al. 2022, approach 2): the compute-optimal model and data size
per FLOPs budget, and the power laws N*(C) and D*(C) through them."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from radfm_jax.scaling.fit.inputs import (
    ArrayLike,
    ScalingFitError,
    finite_column,
    positive_column,
    same_length,
)


class ExtrapolationWarning(UserWarning):
    """A compute-optimal size read off a parabola outside the model sizes that were trained."""


def group_budgets(flops: ArrayLike, rtol: float = 0.05) -> np.ndarray:
    """Group labels (0, 1, ... by increasing FLOPs): a run joins the current budget while its
    FLOPs are within ``rtol`` of the budget's smallest run, since step counts round the budget."""
    compute = positive_column("flops", flops)
    labels = np.empty(len(compute), dtype=int)
    group, start = -1, -np.inf
    for index in np.argsort(compute, kind="stable"):
        if compute[index] > start * (1.0 + rtol):
            group, start = group + 1, compute[index]
        labels[index] = group
    return labels


@dataclasses.dataclass(frozen=True, eq=False)
class IsoFlopBudget:
    """One FLOPs budget: its runs, the parabola metric = c2 u^2 + c1 u + c0 in u = ln(params),
    and the parabola's optimum u* = -c1 / (2 c2), i.e. N* = exp(u*)."""

    budget: float
    params: np.ndarray
    examples: np.ndarray
    metric: np.ndarray
    parabola: tuple[float, float, float]
    n_opt: float
    d_opt: float
    metric_opt: float
    in_range: bool  # N* lies within the budget's sampled model sizes (else it is extrapolated)


@dataclasses.dataclass(frozen=True, eq=False)
class IsoFlopResult:
    """Compute-optimal scaling N* = n_coef * C**n_exponent and D* = d_coef * C**d_exponent,
    fitted by least squares in log-log space over the usable budgets."""

    budgets: tuple[IsoFlopBudget, ...]
    skipped: tuple[str, ...]
    n_exponent: float
    n_coef: float
    d_exponent: float
    d_coef: float
    increasing_metric: bool

    @property
    def extrapolated(self) -> tuple[float, ...]:
        """The budgets whose N* lies outside their sampled model sizes (``in_range`` False)."""
        return tuple(b.budget for b in self.budgets if not b.in_range)

    def predict_n_opt(self, flops: ArrayLike) -> np.ndarray:
        return self.n_coef * np.asarray(flops, np.float64) ** self.n_exponent

    def predict_d_opt(self, flops: ArrayLike) -> np.ndarray:
        return self.d_coef * np.asarray(flops, np.float64) ** self.d_exponent

    def params(self) -> dict[str, float]:
        return {
            "n_exponent": self.n_exponent, "n_coef": self.n_coef,
            "d_exponent": self.d_exponent, "d_coef": self.d_coef,
        }


def _budget_optimum(
    budget: float, params: np.ndarray, examples: np.ndarray, metric: np.ndarray, increasing: bool
) -> IsoFlopBudget | str:
    """The budget's optimum, or the reason it has none."""
    if len(np.unique(params)) < 3:
        return f"budget {budget:.3g}: {len(np.unique(params))} model size(s), a parabola needs 3"
    u = np.log(params)
    c2, c1, c0 = np.polyfit(u, metric, 2)
    if (c2 <= 0) != increasing:
        shape = "maximum" if increasing else "minimum"
        return f"budget {budget:.3g}: the parabola has no {shape} (add model sizes either side)"
    u_opt = -c1 / (2.0 * c2)
    # D* from the budget's own runs: log examples is linear in log params at fixed compute
    # (examples = C / flops_per_example(N)), so the line through them read at N* gives D*.
    slope, intercept = np.polyfit(u, np.log(examples), 1)
    return IsoFlopBudget(
        budget=budget, params=params, examples=examples, metric=metric,
        parabola=(float(c2), float(c1), float(c0)),
        n_opt=float(np.exp(u_opt)), d_opt=float(np.exp(intercept + slope * u_opt)),
        metric_opt=float(np.polyval([c2, c1, c0], u_opt)),
        in_range=bool(u.min() <= u_opt <= u.max()),
    )


def _warn_extrapolated(budgets: list[IsoFlopBudget]) -> None:
    outside = [b for b in budgets if not b.in_range]
    if outside:
        shown = ", ".join(
            f"{b.budget:.3g} (N* {b.n_opt:.3g}, sizes {b.params.min():.3g}-{b.params.max():.3g})"
            for b in outside
        )
        warnings.warn(
            f"IsoFLOP: the optimum of {len(outside)} of {len(budgets)} budgets lies outside the "
            f"model sizes trained at it, so N* is extrapolated from its parabola: {shown}; train "
            "sizes beyond that end (see IsoFlopResult.extrapolated)",
            ExtrapolationWarning, stacklevel=3,
        )


def isoflop_optimum(
    flops: ArrayLike,
    params: ArrayLike,
    examples: ArrayLike,
    metric: ArrayLike,
    *,
    increasing_metric: bool = False,
    budget_rtol: float = 0.05,
) -> IsoFlopResult:
    """Hoffmann et al. 2022 approach 2: the compute-optimal model size per FLOPs budget.

    Runs are grouped into budgets (``group_budgets``); per budget a parabola in ln(params) is
    fitted to the metric and its minimum (a loss) or maximum (``increasing_metric``) is N*. D*
    is read from the budget's runs at N* (see ``_budget_optimum``). Budgets with fewer than three
    model sizes or without an optimum are skipped (reasons in ``skipped``); at least two must
    remain. Finally ln N* = ln k + a ln C and ln D* = ln k' + b ln C by least squares. A budget
    whose N* lies outside its trained sizes is kept but flagged (``in_range`` False, listed in
    ``extrapolated``) with an ExtrapolationWarning.
    """
    compute, sizes = positive_column("flops", flops), positive_column("params", params)
    seen, values = positive_column("examples", examples), finite_column("metric", metric)
    same_length(flops=compute, params=sizes, examples=seen, metric=values)
    labels = group_budgets(compute, budget_rtol)
    budgets, skipped = [], []
    for label in range(labels.max() + 1):
        member = labels == label
        budget = float(np.exp(np.log(compute[member]).mean()))
        outcome = _budget_optimum(
            budget, sizes[member], seen[member], values[member], increasing_metric
        )
        (skipped if isinstance(outcome, str) else budgets).append(outcome)
    if len(budgets) < 2:
        raise ScalingFitError(
            f"IsoFLOP analysis needs at least 2 budgets with 3+ model sizes and an optimum, "
            f"found {len(budgets)}" + "".join(f"; {reason}" for reason in skipped[:3])
            + (f"; and {len(skipped) - 3} more budgets skipped" if len(skipped) > 3 else "")
        )
    _warn_extrapolated(budgets)
    log_c = np.log([b.budget for b in budgets])
    n_exponent, log_n_coef = np.polyfit(log_c, np.log([b.n_opt for b in budgets]), 1)
    d_exponent, log_d_coef = np.polyfit(log_c, np.log([b.d_opt for b in budgets]), 1)
    return IsoFlopResult(
        budgets=tuple(budgets), skipped=tuple(skipped),
        n_exponent=float(n_exponent), n_coef=float(np.exp(log_n_coef)),
        d_exponent=float(d_exponent), d_coef=float(np.exp(log_d_coef)),
        increasing_metric=increasing_metric,
    )
