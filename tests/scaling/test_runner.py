"""The sweep runner (skip finished, mark failed, resume interrupted), its status and the collected
table. Fast tier: states and collection from hand-made workdirs; slow tier: real smoke training."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.datasets import open_prepared
from radfm_jax.scaling import runner
from radfm_jax.scaling.collect import COLUMNS, collect
from radfm_jax.scaling.sweep import Sweep, grid

SMOKE = "experiments/synthetic_cxr/clip.py:smoke"
VOCAB = 256
BASE_OVERRIDES = ["total_steps=4", "log_every=1", "eval_every=4", "checkpoint_every=2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    os.environ.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return os.environ["RADFM_DATA_DIR"]


@pytest.fixture(scope="module")
def base():
    return load_experiment(SMOKE, BASE_OVERRIDES)


def _grid(base, data_patients):
    return grid(base, model_sizes=[{"name": "w16", "model.image.width": 16, "model.text.width": 16}],
                data_patients=data_patients, steps=[4], vocab_size=VOCAB, base_spec=SMOKE,
                base_overrides=BASE_OVERRIDES)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_status_reports_each_state(base, tmp_path):
    sweep = _grid(base, [10, 20, 30, 40, 50, 60])
    done, running, failed, interrupted, resumable, fresh = sweep.points
    status_dir = tmp_path / "_status"
    _write(status_dir / f"{done.name}.DONE", "{}")
    _write(tmp_path / done.name / "eval" / "step_00000004.json", "{}")
    _write(status_dir / f"{running.name}.RUNNING", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    _write(status_dir / f"{failed.name}.FAILED", "ConfigError: bad thing\n\ntraceback")
    _write(status_dir / f"{interrupted.name}.RUNNING", json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    (tmp_path / interrupted.name / "checkpoints" / "2").mkdir(parents=True)
    (tmp_path / resumable.name / "checkpoints" / "2").mkdir(parents=True)
    (tmp_path / resumable.name / "checkpoints" / "4.orbax-checkpoint-tmp-1").mkdir()  # unfinished save
    statuses = {s.name: s for s in runner.sweep_status(sweep, tmp_path)}
    assert [statuses[p.name].state for p in sweep.points] == ["done", "running", "failed", "pending", "pending",
                                                              "pending"]
    assert statuses[failed.name].detail == "ConfigError: bad thing"
    assert statuses[running.name].detail.startswith(f"pid {os.getpid()}")
    assert "interrupted" in statuses[interrupted.name].detail and statuses[interrupted.name].step == 2
    assert statuses[resumable.name].detail == "resumes from step 2"
    assert (statuses[fresh.name].step, statuses[fresh.name].detail) == (0, "")
    table = runner.format_status(list(statuses.values()))
    assert table.splitlines()[-1] == "1 done, 1 running, 1 failed, 3 pending"
    assert f"{done.name}  done" in table
    # A DONE marker without the final eval file (e.g. the eval folder was deleted) is not done.
    (tmp_path / done.name / "eval" / "step_00000004.json").unlink()
    assert runner.point_status(tmp_path, done).state == "pending"


def test_collect_writes_the_table_of_finished_points(base, data_dir, tmp_path):
    finished, unfinished = _grid(base, [30, 40]).points
    work = tmp_path / finished.name
    lines = [{"step": 1, "loss": 4.0, "step_time_s": 2.0, "model_flops_per_step": 1.0},
             {"step": 3, "loss": 3.5, "step_time_s": 0.5, "compiled_flops_per_step": 7e9},
             {"step": 4, "loss": 3.25, "step_time_s": 0.25, "compiled_flops_per_step": 8e9}]
    _write(work / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    _write(work / "eval" / "step_00000004.json", json.dumps({"zeroshot/auroc_mean": 0.75, "retrieval/i2t_recall@1": 0.5}))
    _write(tmp_path / unfinished.name / "metrics.jsonl", json.dumps(lines[0]) + "\n")

    rows = collect(Sweep("s", (finished, unfinished)), tmp_path)
    assert [row["point"] for row in rows] == [finished.name]
    row = rows[0]
    # Studies of the 30 chosen patients, counted in the full training split.
    full = open_prepared(base.data).sources["train"]
    chosen = {r["patient_id"] for r in open_prepared(finished.config.data).sources["train"]}
    assert len(chosen) == 30
    assert row["data_size"] == sum(full[i]["patient_id"] in chosen for i in range(len(full)))
    expected = {"params": finished.params, "data_patients": 30, "steps": 4, "batch_size": 16, "examples_seen": 64,
                "flops_per_step": finished.flops_per_step, "compiled_flops_per_step": 8e9,
                "total_flops": 4 * finished.flops_per_step, "wall_time_s": 2.0 + 2 * 0.5 + 0.25, "loss": 3.25,
                "zeroshot/auroc_mean": 0.75, "retrieval/i2t_recall@1": 0.5}
    assert {key: row[key] for key in expected} == expected
    assert [json.loads(line) for line in (tmp_path / "sweep.jsonl").read_text().splitlines()] == rows
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:len(COLUMNS)] == list(COLUMNS)
    assert float(table[0]["zeroshot/auroc_mean"]) == 0.75 and int(table[0]["data_size"]) == row["data_size"]


def _steps(workdir):
    return [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_run_finishes_points_marks_failures_and_skips_finished(base, data_dir, tmp_path):
    good_a, good_b = _grid(base, [30, 60]).points
    # Valid as a config, fails in training: the smoke split has far fewer patients.
    (bad,) = _grid(base, [100_000]).points
    sweep = Sweep("s", (good_a, bad, good_b), SMOKE)
    states = runner.run_sweep(sweep, tmp_path)
    assert states == {good_a.name: "done", bad.name: "failed", good_b.name: "done"}
    for point in (good_a, good_b):
        assert _steps(tmp_path / point.name) == [1, 2, 3, 4]
        assert (tmp_path / point.name / "eval" / "step_00000004.json").is_file()
    assert "training split has" in (tmp_path / "_status" / f"{bad.name}.FAILED").read_text()
    assert [s.state for s in runner.sweep_status(sweep, tmp_path)] == ["done", "failed", "done"]
    assert not list((tmp_path / "_status").glob("*.RUNNING"))

    before = {p.name: (tmp_path / p.name / "metrics.jsonl").read_text() for p in (good_a, good_b)}
    states = runner.run_sweep(sweep, tmp_path)  # the failed point is retried and fails again
    assert states == {good_a.name: "done", bad.name: "failed", good_b.name: "done"}
    assert {p.name: (tmp_path / p.name / "metrics.jsonl").read_text() for p in (good_a, good_b)} == before

    rows = collect(sweep, tmp_path)
    assert [row["point"] for row in rows] == [good_a.name, good_b.name]
    assert all(row["wall_time_s"] > 0 and row["loss"] > 0 and "zeroshot/auroc_mean" in row for row in rows)
    assert rows[0]["data_size"] < rows[1]["data_size"]


@pytest.mark.slow
def test_an_interrupted_point_resumes_from_its_checkpoint(base, data_dir, tmp_path, stop_at_step):
    (point,) = _grid(base, [30]).points
    sweep = Sweep("s", (point,), SMOKE)
    stop_at_step(2)
    assert runner.run_sweep(sweep, tmp_path) == {point.name: "pending"}
    assert runner.checkpoint_step(tmp_path / point.name) == 2
    assert runner.point_status(tmp_path, point).detail == "resumes from step 2"
    # As if the runner had been killed: a RUNNING marker of a dead process.
    (tmp_path / "_status" / f"{point.name}.RUNNING").write_text(
        json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    assert runner.point_status(tmp_path, point).state == "pending"

    stop_at_step(-1)
    assert runner.run_sweep(sweep, tmp_path) == {point.name: "done"}
    assert _steps(tmp_path / point.name) == [1, 2, 3, 4]  # steps 3 and 4 only added, nothing redone
    assert runner.checkpoint_step(tmp_path / point.name) == 4


def test_a_point_held_by_a_live_process_is_left_alone(base, tmp_path):
    (point,) = _grid(base, [30]).points
    _write(tmp_path / "_status" / f"{point.name}.RUNNING", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert runner.run_sweep(Sweep("s", (point,)), tmp_path) == {point.name: "running"}
    assert not (tmp_path / point.name).exists()
