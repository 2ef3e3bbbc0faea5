"""Run a sweep's points one after another in this process, report where each stands, or print the
commands that run them on a Cloud TPU VM instead.

Each point trains in ROOT/<point> with the ordinary trainer, so an interrupted point resumes from
its checkpoint. The runner's markers live beside the workdirs, in ROOT/_status (a workdir must
hold only what `radfm train` writes): `<point>.RUNNING` (JSON: pid, host, start time) while it
trains, `<point>.DONE` (JSON: start and end time) once it has, `<point>.FAILED` (the error and
its traceback) when training raised. A finished point has a DONE marker and its final results
(the eval file of its last step, or its last checkpoint when eval_every = 0); a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import socket
import time
import traceback
from pathlib import Path

from radfm_jax.config.loading import load_experiment
from radfm_jax.errors import ConfigError
from radfm_jax.scaling.sweep import Sweep, SweepPoint
from radfm_jax.train import loop
from radfm_jax.train.workdir import config_differences

log = logging.getLogger(__name__)

STATUS_DIR = "_status"
DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"


@dataclasses.dataclass(frozen=True)
class PointStatus:
    name: str
    state: str  # done / running / failed / pending
    step: int  # the latest checkpoint's step (where a resumed run starts)
    total_steps: int
    detail: str  # the error's first line, the running pid, "interrupted", ...


def _marker(root: Path, point: SweepPoint, kind: str) -> Path:
    return Path(root) / STATUS_DIR / f"{point.name}.{kind}"


def checkpoint_step(workdir: Path) -> int:
    """The latest finished checkpoint's step (Orbax names finished ones by their step), else 0."""
    folder = Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=0)


def final_eval_file(root: Path, point: SweepPoint) -> Path:
    return Path(root) / point.name / "eval" / f"step_{point.steps:08d}.json"


def has_final_results(root: Path, point: SweepPoint) -> bool:
    """The point trained to its last step: its last eval file exists (its last checkpoint
    when it evaluates nothing)."""
    if point.config.eval_every:
        return final_eval_file(root, point).is_file()
    return checkpoint_step(Path(root) / point.name) >= point.steps


def is_finished(root: Path, point: SweepPoint) -> bool:
    return _marker(root, point, "DONE").is_file() and has_final_results(root, point)


def _running_owner(root: Path, point: SweepPoint) -> dict | None:
    """The RUNNING marker's content if its process may still run; None if there is no marker
    or its pid is dead on this host (an interrupted run: resumable)."""
    path = _marker(root, point, "RUNNING")
    try:
        owner = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if owner.get("host") != socket.gethostname():
        return owner  # another machine's process: it cannot be checked from here
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return owner


def _claim(root: Path, point: SweepPoint) -> bool:
    """Write the RUNNING marker atomically; False when a live process holds the point."""
    path = _marker(root, point, "RUNNING")
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            with open(path, "x") as out:
                out.write(json.dumps(owner) + "\n")
            return True
        except FileExistsError:
            if _running_owner(root, point) is not None:
                return False
            path.unlink(missing_ok=True)  # stale: its process died
    return False


def run_point(point: SweepPoint, root: Path) -> str:
    """Train one point (resuming it if it has a checkpoint) and mark the outcome; returns its
    state afterwards. Errors are recorded in the FAILED marker, not raised."""
    root = Path(root)
    if not _claim(root, point):
        log.info("sweep point %s: another process is training it; skipped", point.name)
        return RUNNING
    started = time.time()
    _marker(root, point, "FAILED").unlink(missing_ok=True)
    try:
        loop.train(point.config, root / point.name)
    except Exception as err:
        text = f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}"
        _marker(root, point, "FAILED").write_text(text)
        log.error("sweep point %s failed: %s", point.name, f"{type(err).__name__}: {err}".splitlines()[0])
        return FAILED
    finally:
        _marker(root, point, "RUNNING").unlink(missing_ok=True)
    if not has_final_results(root, point):  # SIGTERM: train() saved a checkpoint and returned
        return PENDING
    _marker(root, point, "DONE").write_text(json.dumps({"started": started, "finished": time.time()}) + "\n")
    return DONE


def run_sweep(sweep: Sweep, root: str | Path) -> dict[str, str]:
    """Run every unfinished point in order; returns {point: state}. A point that raises is
    marked failed and the sweep goes on; a point stopped by SIGTERM stops the sweep (rerun the
    same command to resume)."""
    root = Path(root)
    states: dict[str, str] = {}
    for i, point in enumerate(sweep.points, 1):
        if is_finished(root, point):
            log.info("sweep point %d/%d %s: done; skipped", i, len(sweep.points), point.name)
            states[point.name] = DONE
            continue
        log.info("sweep point %d/%d %s: training (%s)", i, len(sweep.points), point.name, " ".join(point.overrides))
        states[point.name] = run_point(point, root)
        if states[point.name] == PENDING:
            log.warning("sweep stopped at %s before its last step; rerun to resume", point.name)
            break
    return states


def point_status(root: str | Path, point: SweepPoint) -> PointStatus:
    root = Path(root)
    step = checkpoint_step(root / point.name)

    def status(state: str, detail: str = "") -> PointStatus:
        return PointStatus(point.name, state, step, point.steps, detail)

    if is_finished(root, point):
        return status(DONE)
    owner = _running_owner(root, point)
    if owner is not None:
        return status(RUNNING, f"pid {owner.get('pid')} on {owner.get('host')}")
    failed = _marker(root, point, "FAILED")
    if failed.is_file():
        return status(FAILED, (failed.read_text().splitlines() or [""])[0])
    if _marker(root, point, "RUNNING").is_file():
        return status(PENDING, "interrupted; resumes from its checkpoint" if step else "interrupted")
    return status(PENDING, f"resumes from step {step}" if step else "")


def sweep_status(sweep: Sweep, root: str | Path) -> list[PointStatus]:
    return [point_status(root, point) for point in sweep.points]


def format_status(statuses: list[PointStatus]) -> str:
    """A plain-text table, one row per point, and a count per state."""
    rows = [("point", "state", "step", "detail")]
    rows += [(s.name, s.state, f"{s.step}/{s.total_steps}", s.detail) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    counts = {state: sum(s.state == state for s in statuses) for state in (DONE, RUNNING, FAILED, PENDING)}
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return "\n".join(line.rstrip() for line in lines)


def emit_tpu_commands(sweep: Sweep, root: str, *, tpu_name: str, project: str, zone: str,
                      accelerator_type: str = "") -> list[str]:
    """One `python tpu/tpu_vm.py ... run -- radfm train ...` line per point. ROOT is a path on
    the TPU VM's shared storage. Each point's overrides are checked to rebuild its config from
    the sweep's base experiment, so what runs there is what this sweep describes."""
    if not sweep.base_spec:
        raise ConfigError(f"sweep '{sweep.name}' has no base_spec (the experiment its points' --set "
                          "overrides apply to); build it with grid(..., base_spec=...) to emit commands")
    tpu = ["python", "tpu/tpu_vm.py", "--name", tpu_name, "--project", project, "--zone", zone]
    if accelerator_type:
        tpu += ["--accelerator-type", accelerator_type]
    lines = []
    for point in sweep.points:
        differences = config_differences(load_experiment(sweep.base_spec, point.overrides), point.config)
        if differences:
            raise ConfigError(f"point {point.name}: --config {sweep.base_spec} with its --set overrides does not "
                              f"give its config ({'; '.join(differences[:3])}); record every change in its overrides")
        train = ["radfm", "train", "--config", sweep.base_spec, "--workdir", f"{root.rstrip('/')}/{point.name}"]
        for item in point.overrides:
            train += ["--set", item]
        lines.append(shlex.join([*tpu, "run", "--", *train]))
    return lines
