"""Scaling-law figures. Each ``save_*`` draws one figure, writes ``<out_dir>/<name>.png`` and
``<out_dir>/<name>.json`` (the plotted numbers and the fitted parameters), and returns the figure.

Figures are built on matplotlib's object API with the Agg canvas, so plotting never touches
pyplot's global state or the user's interactive backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from radfm_jax.scaling.fit import (
    ArrayLike,
    IsoFlopResult,
    JointFit,
    PowerLawFit,
    compute_frontier,
)


def jsonable(value: Any) -> Any:
    """NumPy values to JSON types; NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(item) for item in np.asarray(value, dtype=object).tolist()]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def fit_summary(fit: PowerLawFit | JointFit | IsoFlopResult) -> dict[str, Any]:
    """The fitted parameters with the fit's kind, and where it has them the log coordinates it
    was fitted in, its transform and loss, the parameters it held fixed, and the IsoFLOP
    budgets whose optimum was extrapolated."""
    summary: dict[str, Any] = {"kind": type(fit).__name__, **fit.params()}
    if hasattr(fit, "log_params"):
        summary.update(fit.log_params())
    for extra in ("transform", "loss", "fixed", "extrapolated"):
        if hasattr(fit, extra):
            summary[extra] = getattr(fit, extra)
    return summary


def _save(
    figure: Figure,
    out_dir: str | Path,
    name: str,
    fit: PowerLawFit | JointFit | IsoFlopResult,
    numbers: dict[str, Any],
    *,
    metric_name: str | None = None,
) -> Figure:
    """Lays the figure out and writes it with its numbers, which every figure heads with its
    metric's name (when it plots a metric) and the fitted parameters."""
    if not name or Path(name).name != name:
        raise ValueError(f"plot name must be a plain file stem like 'frontier', got {name!r}")
    figure.tight_layout()
    heading = {"metric_name": metric_name} if metric_name is not None else {}
    numbers = {**heading, "fit": fit_summary(fit), **numbers}
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(folder / f"{name}.png", dpi=110)
    (folder / f"{name}.json").write_text(json.dumps(jsonable(numbers), indent=2) + "\n")
    return figure


def _log_grid(low: float, high: float, points: int = 100) -> np.ndarray:
    return np.logspace(np.log10(low), np.log10(high), points)


def save_compute_frontier(
    out_dir: str | Path,
    name: str,
    flops: ArrayLike,
    params: ArrayLike,
    metric: ArrayLike,
    fit: PowerLawFit,
    *,
    metric_name: str = "metric",
) -> Figure:
    """Metric vs training compute: one line per model size, the compute frontier (points no
    cheaper run beats) and the power law ``fit`` drawn over the compute range (one line)."""
    compute = np.asarray(flops, np.float64)
    sizes = np.asarray(params, np.float64)
    values = np.asarray(metric, np.float64)
    increasing = fit.transform == "one_minus"
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    curves = []
    distinct = np.unique(sizes)
    # Ordered colours (small models dark): a sweep has more sizes than the default cycle.
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(distinct)))
    for size, colour in zip(distinct, colours):
        member = np.flatnonzero(sizes == size)
        member = member[np.argsort(compute[member])]
        axes.plot(compute[member], values[member], marker="o", ms=3, lw=1, color=colour,
                  label=f"N={size:.3g}")
        curves.append({"params": size, "flops": compute[member], "metric": values[member]})
    frontier = compute_frontier(compute, values, increasing_metric=increasing)
    axes.scatter(compute[frontier], values[frontier], s=40, facecolors="none",
                 edgecolors="black", zorder=3, label="frontier")
    grid = _log_grid(compute.min(), compute.max())
    axes.plot(grid, fit.predict(grid), color="black", lw=2, ls="--",
              label=f"fit: alpha={fit.alpha:.3f}, E={fit.E:.3g}")
    axes.set_xscale("log")
    axes.set_xlabel("training compute (FLOPs)")
    axes.set_ylabel(metric_name)
    axes.legend(fontsize="small")
    return _save(figure, out_dir, name, fit, {
        "curves": curves,
        "frontier": {"flops": compute[frontier], "metric": values[frontier]},
        "fit_curve": {"flops": grid, "metric": fit.predict(grid)},
    }, metric_name=metric_name)


def save_isoflop(
    out_dir: str | Path, name: str, result: IsoFlopResult, *, metric_name: str = "metric"
) -> Figure:
    """Left: metric vs model size per FLOPs budget with its fitted parabola (one line per budget)
    and optimum (star; hollow, and "(N* extrapolated)" in the legend, when it lies outside the
    budget's trained sizes). Right: N* and D* vs compute with their power laws (two lines)."""
    figure = Figure(figsize=(11, 4.5))
    left, right = figure.subplots(1, 2)
    budgets = []
    for budget in result.budgets:
        grid = _log_grid(budget.params.min(), budget.params.max())
        curve = np.polyval(budget.parabola, np.log(grid))
        label = f"C={budget.budget:.2g}" + ("" if budget.in_range else " (N* extrapolated)")
        (line,) = left.plot(grid, curve, lw=1.5, label=label)
        left.scatter(budget.params, budget.metric, s=14, color=line.get_color())
        # An optimum outside the trained sizes is drawn hollow: the parabola was extrapolated.
        left.scatter([budget.n_opt], [budget.metric_opt], marker="*", s=120,
                     color=line.get_color() if budget.in_range else "none",
                     edgecolors=line.get_color() if not budget.in_range else "black", zorder=3)
        budgets.append({
            "budget": budget.budget, "params": budget.params, "examples": budget.examples,
            "metric": budget.metric, "parabola": budget.parabola, "n_opt": budget.n_opt,
            "d_opt": budget.d_opt, "metric_opt": budget.metric_opt,
            "in_range": budget.in_range, "curve": {"params": grid, "metric": curve},
        })
    left.set_xscale("log")
    left.set_xlabel("parameters")
    left.set_ylabel(metric_name)
    left.legend(fontsize="small")

    compute = np.array([b.budget for b in result.budgets])
    grid = _log_grid(compute.min(), compute.max())
    right.scatter(compute, [b.n_opt for b in result.budgets], color="C0")
    right.plot(grid, result.predict_n_opt(grid), color="C0",
               label=f"N* ~ C^{result.n_exponent:.3f}")
    right.scatter(compute, [b.d_opt for b in result.budgets], color="C1")
    right.plot(grid, result.predict_d_opt(grid), color="C1",
               label=f"D* ~ C^{result.d_exponent:.3f}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("training compute (FLOPs)")
    right.set_ylabel("compute-optimal parameters / examples")
    right.legend(fontsize="small")
    return _save(figure, out_dir, name, result, {
        "budgets": budgets,
        "skipped": list(result.skipped),
        "optimum_curves": {
            "flops": grid, "n_opt": result.predict_n_opt(grid), "d_opt": result.predict_d_opt(grid),
        },
    }, metric_name=metric_name)


def save_residuals(
    out_dir: str | Path,
    name: str,
    fit: PowerLawFit | JointFit,
    x: ArrayLike | tuple[ArrayLike, ArrayLike],
    y: ArrayLike,
    *,
    xlabel: str = "x",
) -> Figure:
    """Log residuals log(predicted error) - log(observed error) of ``fit`` against x (against N
    for a ``JointFit``, whose ``x`` is the tuple ``(n, d)``), with the zero line."""
    inputs = tuple(x) if isinstance(fit, JointFit) else (x,)
    residuals = fit.log_residuals(*inputs, y)
    axis = np.asarray(inputs[0], np.float64)
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    axes.axhline(0.0, color="black", lw=1)
    axes.scatter(axis, residuals, s=16)
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("log residual (fit - observed)")
    return _save(figure, out_dir, name, fit, {
        "x": axis,
        "residual": residuals,
        "rms": float(np.sqrt(np.mean(residuals**2))),
    })
