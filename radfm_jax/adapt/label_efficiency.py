"""Label efficiency: fine-tuning modes x fractions of the training patients x seeds, each point
an ordinary fine-tuning run (started from one pretraining workdir) through the sweep runner, and
one table in the layout of the published ones (GLoRIA, MGCA, MRM: a row per method, a column per
label fraction, mean and 95 % interval over seeds) with a plot.

Subsets are patient-level and nested: fraction f keeps the first f of a permutation of the
training patients seeded by data.subset_seed, so with one seed 1 % lies inside 10 %; the test
split is the same for every point.

    radfm adapt-sweep experiments/adapt/synthetic_cxr_label_efficiency.py --from runs/clip --root runs/le
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from radfm_jax.config.loading import call_spec_file, load_experiment
from radfm_jax.errors import ConfigError
from radfm_jax.scaling.sweep import Sweep, SweepPoint, model_flops_per_step, param_count

TABLE_FILE = "label_efficiency"  # .md, .csv, .json and .png in the sweep's root


@dataclasses.dataclass(frozen=True)
class LabelEfficiencySpec:
    """What a label-efficiency spec file's `get_label_efficiency(arg)` returns."""

    name: str
    config: str  # the fine-tuning experiment; `<config>:<mode>` is each mode's variant
    modes: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()  # `--set` items for every point
    metric: str = "classification/auroc_mean"


def load_spec(spec: str) -> LabelEfficiencySpec:
    return call_spec_file(spec, "get_label_efficiency", LabelEfficiencySpec, "label-efficiency spec",
                          "experiments/adapt/synthetic_cxr_label_efficiency.py")


def point_name(mode: str, fraction: float, seed: int) -> str:
    return f"{mode}__f-{fraction:g}__s-{seed}"


def build_sweep(spec: LabelEfficiencySpec, init_workdir: str | Path) -> Sweep:
    """One point per (mode, fraction, seed), each fine-tuned from `init_workdir`'s tower."""
    if not spec.modes or not spec.fractions or not spec.seeds:
        raise ConfigError(f"label-efficiency spec '{spec.name}' needs modes, fractions and seeds")
    points = []
    for mode in spec.modes:
        for fraction in spec.fractions:
            for seed in spec.seeds:
                own = (f"init.workdir={init_workdir}", f"data.train_fraction={fraction}",
                       f"data.subset_seed={seed}", f"seed={seed}")
                overrides = (*spec.overrides, *own)
                config = load_experiment(f"{spec.config}:{mode}", overrides)
                vocab = config.data.vocab_size
                points.append(SweepPoint(
                    name=point_name(mode, fraction, seed), config=config, params=param_count(config, vocab),
                    data_size=0, steps=config.total_steps, flops_per_step=model_flops_per_step(config, vocab),
                    overrides=overrides))
    return Sweep(spec.name, tuple(points))


def _interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval over seeds; nan for one seed)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean, float(half)


def label_efficiency_table(spec: LabelEfficiencySpec, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{"metric", "fractions", "cells": {mode: {fraction: {"mean", "ci_half_width", "seeds",
    "values"}}}} from the collected sweep rows (ROOT/sweep.jsonl); missing points are left out."""
    by_name = {row["point"]: row for row in rows}
    cells: dict[str, dict[str, Any]] = {}
    for mode in spec.modes:
        for fraction in spec.fractions:
            values = [by_name[name][spec.metric] for seed in spec.seeds
                      if (name := point_name(mode, fraction, seed)) in by_name
                      and by_name[name].get(spec.metric) is not None]
            if values:
                mean, half = _interval(values)
                cells.setdefault(mode, {})[f"{fraction:g}"] = {
                    "mean": mean, "ci_half_width": half, "seeds": len(values), "values": values}
    return {"metric": spec.metric, "fractions": [f"{f:g}" for f in spec.fractions], "cells": cells}


def format_markdown(table: dict[str, Any]) -> str:
    """Rows = modes, columns = label fractions (as percentages), cells "mean ± half-width"."""
    columns = table["fractions"]
    header = "| mode | " + " | ".join(f"{float(f) * 100:g} %" for f in columns) + " |"
    lines = [f"{table['metric']} (mean ± 95 % interval over seeds)", "", header,
             "| --- |" + " --- |" * len(columns)]
    for mode, cells in table["cells"].items():
        values = []
        for fraction in columns:
            cell = cells.get(fraction)
            if cell is None:
                values.append("")
            elif math.isnan(cell["ci_half_width"]):
                values.append(f"{cell['mean']:.3f}")
            else:
                values.append(f"{cell['mean']:.3f} ± {cell['ci_half_width']:.3f}")
        lines.append(f"| {mode} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot_table(table: dict[str, Any], path: Path) -> Path:
    """The metric against the label fraction (log scale), one line per mode with its interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for mode, cells in table["cells"].items():
        fractions = [f for f in table["fractions"] if f in cells]
        x = [float(f) * 100 for f in fractions]
        y = [cells[f]["mean"] for f in fractions]
        err = [0.0 if math.isnan(cells[f]["ci_half_width"]) else cells[f]["ci_half_width"] for f in fractions]
        axes.errorbar(x, y, yerr=err, marker="o", capsize=3, label=mode)
    axes.set_xscale("log")
    axes.set_xlabel("training labels (% of patients)")
    axes.set_ylabel(table["metric"])
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write_table(table: dict[str, Any], root: Path) -> list[Path]:
    root = Path(root)
    paths = [root / f"{TABLE_FILE}.json", root / f"{TABLE_FILE}.md"]
    paths[0].write_text(json.dumps(table, indent=2) + "\n")
    paths[1].write_text(format_markdown(table))
    paths.append(plot_table(table, root / f"{TABLE_FILE}.png"))
    return paths
