"""Metric sinks: WORKDIR/metrics.jsonl, TensorBoard events, WORKDIR/eval/step_<8 digits>.json."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

from etils import epath
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import directory_check
from tensorboardX.summary import scalar

from radfm_jax.train.paths import is_local, workdir_path

METRICS_FILE = "metrics.jsonl"


def _jsonable(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class _LineFile:
    """A JSONL file that grows a line at a time: appended to on a POSIX file system, rewritten
    whole on an object store (gs:// objects cannot be appended to)."""

    def __init__(self, path: epath.Path):
        self._path = path
        self._local = is_local(path)
        if self._local:
            self._file = open(path, "a", buffering=1)
        else:
            self._lines = path.read_text() if path.exists() else ""

    def write(self, line: str) -> None:
        if self._local:
            self._file.write(line)
        else:
            self._lines += line
            self._path.write_text(self._lines)

    def close(self) -> None:
        if self._local:
            self._file.close()


class _EventFile:
    """TensorBoard scalars, written and flushed by the caller on log steps. tensorboardX's
    SummaryWriter writes from a thread that dies on a full disk and then blocks the trainer
    forever on its full queue; here a failed write raises where training can report it."""

    def __init__(self, logdir: str):
        directory_check(logdir)
        self._events = EventsWriter(os.path.join(logdir, "events"))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=step)
        for tag, value in scalars.items():
            if value is not None and math.isfinite(value):  # undefined metrics (no positives) are left out
                event.summary.value.extend(scalar(tag, float(value)).value)
        self._events.write_event(event)
        self._events.flush()

    def close(self) -> None:
        self._events.close()


class MetricWriter:
    def __init__(self, workdir: epath.PathLike, *, resume_step: int | None):
        """resume_step: the step training continues from (None when only evaluating)."""
        self._workdir = workdir_path(workdir)
        if resume_step is not None:
            self._drop_lines_after(resume_step)
        self._file = _LineFile(self._workdir / METRICS_FILE)
        self._tensorboard = _EventFile(os.fspath(self._workdir / "tensorboard"))

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
            out = _LineFile(self._workdir / "metrics.dropped.jsonl")
            out.write("\n".join(dropped) + "\n")
            out.close()
            path.write_text("".join(line + "\n" for line in kept))

    def write_train(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"step": step, **{key: _jsonable(value) for key, value in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._tensorboard.write(step, {f"train/{key}": value for key, value in metrics.items()})

    def write_eval(self, step: int, results: Mapping[str, float]) -> epath.Path:
        eval_dir = self._workdir / "eval"
        eval_dir.mkdir(exist_ok=True)
        stem = f"step_{step:08d}"
        path = eval_dir / f"{stem}.json"
        text = json.dumps({key: _jsonable(v) for key, v in sorted(results.items())}, indent=2) + "\n"
        if path.is_file() and path.read_text() != text:
            # e.g. `radfm eval` with other prompts: keep the earlier results, and the manifest,
            # figures and predictions written with them, beside the new ones.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for earlier in eval_dir.glob(f"{stem}.*"):
                kind = earlier.name[len(stem) + 1:]
                if not kind[:8].isdigit():  # not already set aside
                    earlier.rename(eval_dir / f"{stem}.{stamp}.{kind}")
        path.write_text(text)
        self._tensorboard.write(step, {key.replace("@", "_at_"): value for key, value in results.items()})
        return path

    def write_manifest(self, step: int, manifest: Mapping[str, Any]) -> epath.Path:
        """eval/step_<8 digits>.manifest.json: what the evaluation of `step` ran on."""
        path = self._workdir / "eval" / f"step_{step:08d}.manifest.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    def close(self) -> None:
        try:  # close the event file even when the metrics file fails to flush (a full disk)
            self._file.close()
        finally:
            self._tensorboard.close()


# Beside each metric at a threshold tuned on the evaluated split itself (eval.test_tuned).
TEST_TUNED_LABEL = "(test-tuned: optimistic)"


def format_eval_table(results: Mapping[str, float]) -> str:
    """One line per metric, its interval (`<key>/ci_low`, `/ci_high`) beside it; the per-group
    subgroup numbers stay in the JSON files (one summary line says how many). Metrics at
    thresholds tuned on the evaluated split (`/test_tuned/` keys) are labelled as optimistic so
    a reader never takes them for the val-chosen ones."""
    shown = {key: value for key, value in results.items()
             if "/subgroups/" not in key and not key.endswith(("/ci_low", "/ci_high"))}
    width = max(len(key) for key in shown)
    lines = []
    for key, value in sorted(shown.items()):
        line = f"  {key:<{width}}  {value:.4f}"
        if f"{key}/ci_low" in results:
            line += f"  [{results[f'{key}/ci_low']:.4f}, {results[f'{key}/ci_high']:.4f}]"
        if "/test_tuned/" in key:
            line += f"  {TEST_TUNED_LABEL}"
        lines.append(line)
    subgroups = len(results) - len(shown) - 2 * sum(f"{key}/ci_low" in results for key in shown)
    if subgroups:
        lines.append(f"  ({subgroups} subgroup numbers in eval/step_*.json and eval/step_*.subgroups.json)")
    return "\n".join(lines)
