"""Collect a sweep's finished points into one table: ROOT/sweep.csv and ROOT/sweep.jsonl, one row
per point that has its final results, with what the scaling fits need.

`wall_time_s` is training time from the point's metrics.jsonl: each logged line's `step_time_s`
times the steps since the line before it. It includes compilation (in the first step of each
run or resumed run) and asynchronous checkpointing, and leaves out data preparation, start-up
and evaluation; so it compares points by the cost of their steps.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from radfm_jax.config.schema import DataConfig
from radfm_jax.scaling.runner import final_eval_file, has_final_results
from radfm_jax.scaling.sweep import Sweep, SweepPoint
from radfm_jax.train.metric_writer import METRICS_FILE

CSV_FILE, JSONL_FILE = "sweep.csv", "sweep.jsonl"
# The leading columns, in order; the final eval file's keys follow, sorted.
COLUMNS = ("point", "params", "data_patients", "data_size", "steps", "batch_size", "examples_seen",
           "flops_per_step", "compiled_flops_per_step", "total_flops", "wall_time_s", "loss")


def _metric_lines(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_wall_time(lines: list[dict[str, Any]]) -> float:
    """Sum of step_time_s x steps since the previous logged line (see the module docstring)."""
    total, previous = 0.0, 0
    for line in lines:
        total += (line.get("step_time_s") or 0.0) * (line["step"] - previous)
        previous = line["step"]
    return total


def training_studies(data_cfg: DataConfig) -> int:
    """Studies in the training source a config trains on (its data.train_patients subset)."""
    from radfm_jax.data.datasets import (
        open_prepared,  # opens (or builds) the prepared data set
    )

    return len(open_prepared(data_cfg).sources["train"])


def point_row(point: SweepPoint, root: Path, data_size: int) -> dict[str, Any]:
    lines = _metric_lines(root / point.name)
    compiled = [line["compiled_flops_per_step"] for line in lines if line.get("compiled_flops_per_step")]
    row = {
        "point": point.name,
        "params": point.params,
        "data_patients": point.data_size,
        "data_size": data_size,
        "steps": point.steps,
        "batch_size": point.config.batch_size,
        "examples_seen": point.steps * point.config.batch_size,
        "flops_per_step": point.flops_per_step,
        "compiled_flops_per_step": compiled[-1] if compiled else None,
        "total_flops": point.flops_per_step * point.steps,
        "wall_time_s": training_wall_time(lines),
        "loss": lines[-1]["loss"] if lines else None,
    }
    eval_path = final_eval_file(root, point)
    if eval_path.is_file():
        row.update(json.loads(eval_path.read_text()))
    return row


def collect(sweep: Sweep, root: str | Path) -> list[dict[str, Any]]:
    """One row per point with final results (in sweep order), also written to ROOT/sweep.csv
    and ROOT/sweep.jsonl. Unfinished points are left out; `radfm sweep status` lists them."""
    root = Path(root)
    studies: dict[DataConfig, int] = {}  # points that share a data config share its count
    rows = []
    for point in sweep.points:
        if not has_final_results(root, point):
            continue
        data_cfg = point.config.data
        if data_cfg not in studies:
            studies[data_cfg] = training_studies(data_cfg)
        rows.append(point_row(point, root, studies[data_cfg]))
    write_rows(rows, root)
    return rows


def write_rows(rows: list[dict[str, Any]], root: Path) -> tuple[Path, Path]:
    """ROOT/sweep.jsonl (one object per row) and ROOT/sweep.csv (the union of the rows' keys;
    empty cells where a row lacks one)."""
    root.mkdir(parents=True, exist_ok=True)
    jsonl_path, csv_path = root / JSONL_FILE, root / CSV_FILE
    jsonl_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    extra = sorted({key for row in rows for key in row} - set(COLUMNS))
    with open(csv_path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[*COLUMNS, *extra], restval="")
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return csv_path, jsonl_path
