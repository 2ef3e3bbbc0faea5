"""Figures of the clinical evaluation: reliability diagrams and subgroup TPR / FPR.

Built on matplotlib's object API with the Agg canvas, so neither importing nor plotting touches
pyplot's global state or the user's backend. Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from radfm_jax.evals.calibration import ReliabilityCurve

_COLUMNS = 4


def _write(figure: Figure, path: epath.PathLike) -> epath.Path:
    out = epath.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with out.open("wb") as file:  # through epath: gs:// workdirs too
        figure.savefig(file, format="png", dpi=110)
    return out


def reliability_diagram(curves: Mapping[str, ReliabilityCurve], path: epath.PathLike) -> epath.Path:
    """One panel per finding (a grid of up to four columns): observed frequency against mean
    predicted probability per bin, the diagonal of perfect calibration, and the bin counts."""
    if not curves:
        raise ValueError("reliability_diagram needs at least one curve")
    columns = min(len(curves), _COLUMNS)
    rows = math.ceil(len(curves) / columns)
    figure = Figure(figsize=(3.4 * columns, 3.2 * rows))
    FigureCanvasAgg(figure)
    for i, (finding, curve) in enumerate(curves.items()):
        axes = figure.add_subplot(rows, columns, i + 1)
        filled = curve.counts > 0
        counts_axes = axes.twinx()  # counts behind, so sparse bins read as less certain
        counts_axes.bar(curve.mean_predicted[filled], curve.counts[filled],
                        width=1.0 / curve.counts.size, color="gray", alpha=0.25)
        counts_axes.set_ylim(0, 3 * max(int(curve.counts.max()), 1))  # bars low, under the curve
        counts_axes.set_ylabel("cases", fontsize="small")
        axes.plot([0, 1], [0, 1], ls="--", lw=1, color="black", label="perfect")
        axes.plot(curve.mean_predicted[filled], curve.observed_frequency[filled],
                  marker="o", ms=3, label="model")
        axes.set(xlim=(0, 1), ylim=(0, 1), title=finding,
                 xlabel="mean predicted probability", ylabel="observed frequency")
        axes.set_zorder(counts_axes.get_zorder() + 1)
        axes.patch.set_visible(False)
        axes.legend(fontsize="small", loc="upper left")
    return _write(figure, path)


def _groups_by_attribute(report: Mapping[str, object]) -> dict[str, list[str]]:
    """Attribute -> its groups in report order, read from the flat keys (``sex/F/n_studies``)."""
    groups: dict[str, list[str]] = {}
    for key in report:
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "n_studies":
            groups.setdefault(parts[0], []).append(parts[1])
    return groups


def subgroup_plot(report: Mapping[str, object], path: epath.PathLike) -> epath.Path:
    """One panel per attribute: TPR and FPR of each group at the global threshold with their
    intervals, from a :func:`radfm_jax.evals.subgroups.subgroup_report`; skipped groups are
    labelled and left empty."""
    attributes = _groups_by_attribute(report)
    if not attributes:
        raise ValueError("subgroup_plot: the report has no groups (keys like 'sex/F/n_studies')")
    figure = Figure(figsize=(4.5 * len(attributes), 3.6))
    FigureCanvasAgg(figure)
    for i, (attribute, groups) in enumerate(attributes.items()):
        axes = figure.add_subplot(1, len(attributes), i + 1)
        x = np.arange(len(groups))
        for offset, metric in ((-0.12, "tpr"), (0.12, "fpr")):
            keys = [f"{attribute}/{group}/{metric}" for group in groups]
            shown = [k for k, key in enumerate(keys) if key in report]
            value = np.array([report[keys[k]] for k in shown], dtype=np.float64)
            low = np.array([report[keys[k] + "_ci_low"] for k in shown], dtype=np.float64)
            high = np.array([report[keys[k] + "_ci_high"] for k in shown], dtype=np.float64)
            axes.errorbar(x[shown] + offset, value, yerr=[value - low, high - value],
                          fmt="o", capsize=3, label=metric.upper())
        labels = [f"{g}\n(skipped)" if f"{attribute}/{g}/skipped" in report else g for g in groups]
        axes.set_xticks(x, labels, fontsize="small")
        axes.set(ylim=(0, 1), title=attribute,
                 ylabel=f"rate at threshold {report['threshold']:.3g}")
        axes.legend(fontsize="small")
    return _write(figure, path)
