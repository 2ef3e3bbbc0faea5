"""SIGTERM (preemption) saves and exits cleanly, and the resumed run logs exactly the losses
the uninterrupted run would have. Both runs are `radfm train` subprocesses, as on a cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"
# Log every step; the only checkpoint before the last step is the one SIGTERM asks for.
# eval_every stays the smoke config's 10, so evaluations are compared too.
ARGS = ["train", "--config", SMOKE, "--set", "total_steps=40", "--set", "log_every=1",
        "--set", "checkpoint_every=1000"]
TOTAL = 40
STOP_AFTER = 8
# Wall-clock figures: they differ between any two runs.
TIMING_KEYS = {"step_time_s", "examples_per_sec", "examples_per_sec_per_device", "mfu"}


def _env(data_dir: Path) -> dict:
    env = dict(os.environ, RADFM_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "radfm_jax.cli", *ARGS, "--workdir", str(workdir)]


def _run(workdir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(_command(workdir), env=_env(data_dir), capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def _metrics(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    # a line being written may be incomplete: keep whole lines only
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def _checkpoint_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _evals(workdir: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((workdir / "eval").glob("step_????????.json"))}


def _preempt(workdir: Path, data_dir: Path, log: Path) -> tuple[int, str, int]:
    """Start training, SIGTERM it once step >= STOP_AFTER is logged; (exit code, stderr, step)."""
    with open(log, "w") as err:
        process = subprocess.Popen(_command(workdir), env=_env(data_dir), stdout=subprocess.DEVNULL,
                                   stderr=err, cwd=REPO)
        try:
            deadline = time.monotonic() + 300
            while True:
                records = _metrics(workdir)
                if records and records[-1]["step"] >= STOP_AFTER:
                    break
                assert process.poll() is None, f"exited before step {STOP_AFTER}:\n{log.read_text()[-5000:]}"
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stopped = _metrics(workdir)[-1]["step"]
    return code, log.read_text(), stopped


@pytest.mark.slow
def test_sigterm_saves_exits_cleanly_and_resume_logs_the_uninterrupted_losses(tmp_path):
    data_dir = tmp_path / "data"
    reference, preempted = tmp_path / "uninterrupted", tmp_path / "preempted"

    _run(reference, data_dir)

    code, stderr, stopped = _preempt(preempted, data_dir, tmp_path / "preempted.log")
    assert code == 0, stderr[-5000:]
    assert "Traceback" not in stderr
    assert STOP_AFTER <= stopped < TOTAL, f"the run was not stopped mid-way (last step {stopped})"
    assert f"SIGTERM: saved step {stopped}" in stderr
    # the SIGTERM checkpoint is at the last logged step, so the resume redoes nothing
    assert _checkpoint_steps(preempted) == [stopped]
    assert [r["step"] for r in _metrics(preempted)] == list(range(1, stopped + 1))

    resumed = _run(preempted, data_dir)
    assert f"resumed from step {stopped}" in resumed.stderr
    assert _checkpoint_steps(preempted) == [stopped, TOTAL]
    assert not (preempted / "metrics.dropped.jsonl").exists()

    expected, got = _metrics(reference), _metrics(preempted)
    assert [r["step"] for r in expected] == list(range(1, TOTAL + 1))
    assert [r["step"] for r in got] == list(range(1, TOTAL + 1))
    for want, have in zip(expected, got):
        assert set(have) == set(want)
        for key in set(want) - TIMING_KEYS:
            assert have[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), (have["step"], key, stopped)

    # the evaluations after the resume (and before it) match the uninterrupted run's too
    reference_evals, preempted_evals = _evals(reference), _evals(preempted)
    assert sorted(reference_evals) == sorted(preempted_evals) == [
        f"step_{s:08d}.json" for s in range(10, TOTAL + 1, 10)
    ]
    for name, want in reference_evals.items():
        have = preempted_evals[name]
        assert set(have) == set(want)
        for key, value in want.items():
            if value is None:
                assert have[key] is None, (name, key, have[key], stopped)
            else:
                assert have[key] == pytest.approx(value, abs=1e-6), (name, key, stopped)
