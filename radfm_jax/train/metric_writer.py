"""Metric sinks: WORKDIR/metrics.jsonl, TensorBoard events, WORKDIR/eval/step_<8 digits>.json."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


def _jsonable(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class MetricWriter:
    def __init__(self, workdir: Path, *, resume_step: int | None):
        """resume_step: the step training continues from (None when only evaluating)."""
        self._workdir = Path(workdir)
        if resume_step is not None:
            self._drop_lines_after(resume_step)
        self._file = open(self._workdir / METRICS_FILE, "a", buffering=1)
        self._tensorboard = SummaryWriter(str(self._workdir / "tensorboard"))

    def _drop_lines_after(self, step: int) -> None:
        """A run that died after its last checkpoint logged steps it will now redo: move
        those lines to metrics.dropped.jsonl so each step appears once in metrics.jsonl."""
        path = self._workdir / METRICS_FILE
        if not path.is_file():
            return
        kept, dropped = [], []
        for line in path.read_text().splitlines():
            if line.strip():
                (dropped if json.loads(line)["step"] > step else kept).append(line)
        if dropped:
            with open(self._workdir / "metrics.dropped.jsonl", "a") as out:
                out.write("\n".join(dropped) + "\n")
            path.write_text("".join(line + "\n" for line in kept))

    def write_train(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": step, **{key: _jsonable(value) for key, value in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        for key, value in metrics.items():
            self._tensorboard.add_scalar(f"train/{key}", float(value), step)

    def write_eval(self, step: int, results: Mapping[str, float]) -> Path:
        eval_dir = self._workdir / "eval"
        eval_dir.mkdir(exist_ok=True)
        path = eval_dir / f"step_{step:08d}.json"
        text = json.dumps({key: _jsonable(v) for key, v in sorted(results.items())}, indent=2) + "\n"
        if path.is_file() and path.read_text() != text:
            # e.g. `radfm eval` with other prompts: keep the earlier results beside the new ones.
            path.rename(path.with_suffix(f".{time.strftime('%Y%m%d-%H%M%S')}.json"))
        path.write_text(text)
        for key, value in results.items():
            self._tensorboard.add_scalar(key.replace("@", "_at_"), float(value), step)
        return path

    def close(self) -> None:
        self._file.close()
        self._tensorboard.close()


def format_eval_table(results: Mapping[str, float]) -> str:
    width = max(len(key) for key in results)
    return "\n".join(f"  {key:<{width}}  {value:.4f}" for key, value in sorted(results.items()))
