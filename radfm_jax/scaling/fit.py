"""Scaling-law fits: saturating power laws, the joint N-D law, IsoFLOP optima, bootstrap intervals.

The power laws follow Hoffmann et al. 2022 ("Chinchilla", approach 3): the law is written in
log-sum-exp form, e.g. log L = LSE(log A - alpha * log x, log E), and its parameters minimise the
mean Huber loss of the log residuals log(prediction) - log(observed) with L-BFGS-B, started from a
grid of initialisations; the best optimum wins. The Huber loss (small delta) makes the fit behave
like least absolute deviations, so one diverged sweep point barely moves the exponents.

Metrics that grow with scale (AUROC, recall) are fitted through their error, ``1 - metric``,
which falls towards an irreducible floor E like a loss does; predictions are returned on the
metric's own scale.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from radfm_jax.errors import ConfigError

Transform = Literal["identity", "one_minus"]
ArrayLike = Sequence[float] | np.ndarray


class ScalingFitError(ConfigError):
    """Data a scaling fit cannot use: too few points, NaNs, values outside the law's domain."""


# ----------------------------------------------------------------------------- input checks
def _column(name: str, values: ArrayLike) -> np.ndarray:
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


def _positive(name: str, values: ArrayLike) -> np.ndarray:
    array = _column(name, values)
    bad = np.flatnonzero(array <= 0)
    if bad.size:
        raise ScalingFitError(
            f"{name} must be > 0 (a power law is fitted in log {name}); "
            f"index {bad[0]} is {array[bad[0]]!r}"
        )
    return array


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ScalingFitError(f"inputs must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def _transform(increasing_metric: bool) -> Transform:
    return "one_minus" if increasing_metric else "identity"


def to_error(metric: ArrayLike, transform: Transform, name: str = "y") -> np.ndarray:
    """The quantity the laws model: ``metric`` itself, or ``1 - metric`` for increasing metrics."""
    values = _column(name, metric)
    if transform == "one_minus":
        error = 1.0 - values
        bad = np.flatnonzero(error <= 0)
        if bad.size:
            raise ScalingFitError(
                f"{name} must be < 1 with increasing_metric=True (the fit uses the error "
                f"1 - {name}); index {bad[0]} is {values[bad[0]]!r}. Pass fractions, not percent"
            )
        return error
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise ScalingFitError(
            f"{name} must be > 0 (the fit is in log space); index {bad[0]} is "
            f"{values[bad[0]]!r}. For a metric that grows with scale (AUROC, recall) pass "
            "increasing_metric=True"
        )
    return values


def _from_error(error: np.ndarray, transform: Transform) -> np.ndarray:
    return 1.0 - error if transform == "one_minus" else error


def _require_points(n_distinct: int, n_params: int, what: str) -> None:
    if n_distinct < n_params + 1:
        raise ScalingFitError(
            f"{what} has {n_params} parameters and needs at least {n_params + 1} distinct "
            f"points, got {n_distinct}; add sweep points"
        )


# ------------------------------------------------------------------- robust log-space fitting
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

    theta = (c_1, e_1, ..., c_K, e_K, log E); logs has shape (K, n). Dividing by delta keeps the
    minimiser and gives gradients of order one, which L-BFGS-B's default tolerances expect.
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


def _start_grid(log_y: np.ndarray, n_terms: int, n_starts: int, seed: int) -> np.ndarray:
    """Initialisations in centred coordinates: each term and E as a fraction of the observed y."""
    if n_starts < 1:
        raise ScalingFitError(f"n_starts must be >= 1, got {n_starts}")
    log_coef = np.median(log_y) + np.log([0.1, 0.5, 1.0])
    exponents = (0.1, 0.3, 0.6, 1.0)
    log_floor = log_y.min() + np.log([0.1, 0.5, 0.9])
    grid = np.array(list(itertools.product(*([log_coef, exponents] * n_terms), log_floor)))
    if n_starts < len(grid):
        grid = grid[np.random.default_rng(seed).choice(len(grid), n_starts, replace=False)]
    return grid


def _fit_lse(
    logs: np.ndarray, log_y: np.ndarray, delta: float, n_starts: int, seed: int
) -> tuple[np.ndarray, float]:
    """Best (theta, mean Huber loss) over the starts; exponents are constrained to be >= 0."""
    if delta <= 0:
        raise ScalingFitError(f"huber_delta must be > 0, got {delta}")
    n_terms = logs.shape[0]
    bounds = [(None, None), (0.0, None)] * n_terms + [(None, None)]
    best_theta, best_value = None, np.inf
    # L-BFGS-B's tiny BLAS calls run ~10x slower when OpenBLAS wakes its thread pool for them.
    with threadpool_limits(1, user_api="blas"):
        for start in _start_grid(log_y, n_terms, n_starts, seed):
            result = minimize(
                _lse_objective, start, args=(logs, log_y, delta), jac=True,
                method="L-BFGS-B", bounds=bounds,
            )
            if np.isfinite(result.fun) and result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)
    if best_theta is None:
        raise ScalingFitError("every start of the fit diverged; check the data for outliers")
    return best_theta, best_value * delta


# --------------------------------------------------------------------------- one variable
@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """error(x) = E + A * x**(-alpha), where error = metric ("identity") or 1 - metric ("one_minus").

    ``loss`` is the mean Huber loss of the log residuals at the optimum.
    """

    E: float
    A: float
    alpha: float
    transform: Transform
    loss: float

    def predict_error(self, x: ArrayLike) -> np.ndarray:
        """E + A * x**(-alpha) on the fitted (error) scale."""
        return self.E + np.exp(np.log(self.A) - self.alpha * np.log(np.asarray(x, np.float64)))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The metric on its original scale (1 - error for increasing metrics)."""
        return _from_error(self.predict_error(x), self.transform)

    def log_residuals(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """log(predicted error) - log(observed error): the quantity the fit made small."""
        return np.log(self.predict_error(x)) - np.log(to_error(y, self.transform))

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
    xs = _positive("x", x)
    transform = _transform(increasing_metric)
    error = to_error(y, transform)
    _same_length(x=xs, y=error)
    _require_points(len(np.unique(xs)), 3, "E + A * x^-alpha")
    # Centring log x decorrelates log A from alpha; A is mapped back below.
    log_x = np.log(xs)
    centre = log_x.mean()
    theta, loss = _fit_lse((log_x - centre)[None], np.log(error), huber_delta, n_starts, seed)
    log_a, alpha, log_e = theta
    return PowerLawFit(
        E=float(np.exp(log_e)), A=float(np.exp(log_a + alpha * centre)), alpha=float(alpha),
        transform=transform, loss=loss,
    )


# ------------------------------------------------------------------------------ joint N, D
@dataclasses.dataclass(frozen=True)
class JointFit:
    """error(N, D) = E + A / N**alpha + B / D**beta (Hoffmann et al. 2022, eq. 2)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    transform: Transform
    loss: float

    def predict_error(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        log_n, log_d = np.log(np.asarray(n, np.float64)), np.log(np.asarray(d, np.float64))
        return (
            self.E
            + np.exp(np.log(self.A) - self.alpha * log_n)
            + np.exp(np.log(self.B) - self.beta * log_d)
        )

    def predict(self, n: ArrayLike, d: ArrayLike) -> np.ndarray:
        """The metric on its original scale (1 - error for increasing metrics)."""
        return _from_error(self.predict_error(n, d), self.transform)

    def log_residuals(self, n: ArrayLike, d: ArrayLike, y: ArrayLike) -> np.ndarray:
        return np.log(self.predict_error(n, d)) - np.log(to_error(y, self.transform))

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
    ns, ds = _positive("n", n), _positive("d", d)
    transform = _transform(increasing_metric)
    error = to_error(y, transform)
    _same_length(n=ns, d=ds, y=error)
    for name, values in (("n", ns), ("d", ds)):
        if len(np.unique(values)) < 3:
            raise ScalingFitError(
                f"{name} takes {len(np.unique(values))} distinct value(s); the joint law needs "
                f"at least 3 of each of n and d (use fit_power_law when only one varies)"
            )
    _require_points(len(np.unique(np.stack([ns, ds], axis=1), axis=0)), 5, "E + A/N^a + B/D^b")
    logs = np.log(np.stack([ns, ds]))
    centres = logs.mean(axis=1)
    theta, loss = _fit_lse(logs - centres[:, None], np.log(error), huber_delta, n_starts, seed)
    log_a, alpha, log_b, beta, log_e = theta
    return JointFit(
        E=float(np.exp(log_e)),
        A=float(np.exp(log_a + alpha * centres[0])), alpha=float(alpha),
        B=float(np.exp(log_b + beta * centres[1])), beta=float(beta),
        transform=transform, loss=loss,
    )


# ------------------------------------------------------------------------ envelopes of a sweep
def best_per_value(
    x: ArrayLike, metric: ArrayLike, *, increasing_metric: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct x, the best metric over the other sweep axes (sorted by x).

    Fitting these envelopes gives the law in x when the other axes are not the bottleneck.
    """
    xs, values = _column("x", x), _column("metric", metric)
    _same_length(x=xs, metric=values)
    distinct = np.unique(xs)
    pick = np.max if increasing_metric else np.min
    return distinct, np.array([pick(values[xs == v]) for v in distinct])


def compute_frontier(
    flops: ArrayLike, metric: ArrayLike, *, increasing_metric: bool = False, rtol: float = 0.05
) -> np.ndarray:
    """Indices (by increasing FLOPs) of runs better than every other run costing at most
    (1 + rtol) times as much; rtol makes runs of one budget, whose FLOPs differ by step
    rounding, compete with each other rather than all count as the cheapest."""
    compute, values = _column("flops", flops), _column("metric", metric)
    _same_length(flops=compute, metric=values)
    score = -values if increasing_metric else values
    frontier = []
    for index in np.lexsort((score, compute)):
        rivals = compute <= compute[index] * (1.0 + rtol)
        rivals[index] = False
        if not rivals.any() or score[index] < score[rivals].min():
            frontier.append(int(index))
    return np.array(frontier, dtype=int)


# ------------------------------------------------------------------------------------ IsoFLOP
def group_budgets(flops: ArrayLike, rtol: float = 0.05) -> np.ndarray:
    """Group labels (0, 1, ... by increasing FLOPs): a run joins the current budget while its
    FLOPs are within ``rtol`` of the budget's smallest run, since step counts round the budget."""
    compute = _positive("flops", flops)
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
    remain. Finally ln N* = ln k + a ln C and ln D* = ln k' + b ln C by least squares.
    """
    compute, sizes = _positive("flops", flops), _positive("params", params)
    seen, values = _positive("examples", examples), _column("metric", metric)
    _same_length(flops=compute, params=sizes, examples=seen, metric=values)
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
    log_c = np.log([b.budget for b in budgets])
    n_exponent, log_n_coef = np.polyfit(log_c, np.log([b.n_opt for b in budgets]), 1)
    d_exponent, log_d_coef = np.polyfit(log_c, np.log([b.d_opt for b in budgets]), 1)
    return IsoFlopResult(
        budgets=tuple(budgets), skipped=tuple(skipped),
        n_exponent=float(n_exponent), n_coef=float(np.exp(log_n_coef)),
        d_exponent=float(d_exponent), d_coef=float(np.exp(log_d_coef)),
        increasing_metric=increasing_metric,
    )


# ---------------------------------------------------------------------------------- bootstrap
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
