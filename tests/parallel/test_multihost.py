"""Multi-process runs: the environment -> distributed set-up (fast tier), and two `radfm train`
processes x 4 CPU devices on localhost against one process x 8 devices (slow tier)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radfm_jax.errors import ConfigError
from radfm_jax.parallel.multihost import DistributedSetup, distributed_setup
from radfm_jax.train import loop

REPO = Path(__file__).resolve().parents[2]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"

# ----------------------------------------------------------------------------- fast tier
EXPLICIT = {"RADFM_COORDINATOR_ADDRESS": "10.0.0.2:8476", "RADFM_NUM_PROCESSES": "4", "RADFM_PROCESS_ID": "3"}


def test_single_process_without_any_variables():
    assert distributed_setup({}) == DistributedSetup("single")
    assert distributed_setup({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}) == DistributedSetup("single")  # no srun


def test_explicit_coordinator_from_the_environment():
    assert distributed_setup(EXPLICIT) == DistributedSetup("explicit", "10.0.0.2:8476", 4, 3, None)
    with_ids = distributed_setup({**EXPLICIT, "RADFM_LOCAL_DEVICE_IDS": "2,3"})
    assert with_ids.local_device_ids == (2, 3)
    # explicit variables win over a surrounding Slurm step
    inside_slurm = {**EXPLICIT, "SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "4"}
    assert distributed_setup(inside_slurm).kind == "explicit"


@pytest.mark.parametrize("missing", sorted(EXPLICIT))
def test_half_set_variables_name_what_is_missing(missing):
    environ = {k: v for k, v in EXPLICIT.items() if k != missing}
    with pytest.raises(ConfigError, match=f"but {missing} not"):
        distributed_setup(environ)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"RADFM_COORDINATOR_ADDRESS": "10.0.0.2"}, "not host:port"),
        ({"RADFM_NUM_PROCESSES": "four"}, "not an integer"),
        ({"RADFM_PROCESS_ID": "4"}, r"must be in \[0, RADFM_NUM_PROCESSES=4\)"),
        ({"RADFM_LOCAL_DEVICE_IDS": "0;1"}, "comma-separated"),
        ({"RADFM_DISTRIBUTED": "yes"}, "use 'auto'"),
    ],
)
def test_bad_values_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        distributed_setup({**EXPLICIT, **change})


def test_local_device_ids_alone_is_half_set():
    with pytest.raises(ConfigError, match="RADFM_LOCAL_DEVICE_IDS set but"):
        distributed_setup({"RADFM_LOCAL_DEVICE_IDS": "0"})


def test_cluster_detection_modes():
    srun_step = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8"}
    assert distributed_setup(srun_step).kind == "slurm"
    assert distributed_setup({**srun_step, "SLURM_STEP_NUM_TASKS": "1"}).kind == "single"
    assert distributed_setup({**srun_step, "RADFM_DISTRIBUTED": "off"}).kind == "single"
    assert distributed_setup({"RADFM_DISTRIBUTED": "auto"}) == DistributedSetup("auto")


def test_cli_reports_half_set_variables_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADFM_", "SLURM_"))}
    env.update(RADFM_PROCESS_ID="1", RADFM_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "radfm_jax.cli", "train", "--config", SMOKE,
                             "--workdir", str(tmp_path / "run")], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "radfm train: error: RADFM_PROCESS_ID set but RADFM_COORDINATOR_ADDRESS, RADFM_NUM_PROCESSES not: "
        "a multi-process run needs all of RADFM_COORDINATOR_ADDRESS, RADFM_NUM_PROCESSES, RADFM_PROCESS_ID "
        "(unset them all for a single process)"
    ]
    assert not (tmp_path / "run").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# One process joins a distributed run (the service works the same with one process): it gets
# SIGTERM while at its resume step 5 and must live on and stop after step 6. Each call says
# "I am at this step", so the script waits for the service to record step 5 (JAX's listener
# polls for the signal every second) before asking about step 6.
_SYNC_SCRIPT = """
import os, signal, sys, time
import jax
from jax._src import distributed
from radfm_jax.errors import ConfigError
from radfm_jax.parallel import multihost
jax.distributed.initialize(sys.argv[1], num_processes=1, process_id=0)
try:
    multihost.start_preemption_sync(5)
except ConfigError as error:
    sys.exit(f"ConfigError: {error}")
os.kill(os.getpid(), signal.SIGTERM)
deadline = time.monotonic() + 30
while not distributed.global_state.client.key_value_dir_get("PREEMPTION_CURRENT_COUNTER/"):
    assert time.monotonic() < deadline, "the service never recorded this process's step"
    time.sleep(0.01)
assert multihost.reached_preemption_sync_point(6)
assert not multihost.reached_preemption_sync_point(7)
print("alive, stopping after step 6")
"""


def _sync_script(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RADFM_", "JAX_ENABLE_PREEMPTION"))}
    return subprocess.run([sys.executable, "-c", _SYNC_SCRIPT, f"localhost:{_free_port()}"],
                          env={**environ, "JAX_PLATFORMS": "cpu", **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_preemption_sync_point_is_the_step_after_the_resume_step():
    result = _sync_script()
    assert result.returncode == 0, result.stderr[-3000:]  # SIGTERM reached JAX's handler, did not kill
    assert result.stdout.strip() == "alive, stopping after step 6"
    assert "SIGTERM caught" in result.stderr  # JAX's own notifier saw it


def test_disabled_preemption_service_is_a_config_error():
    result = _sync_script(JAX_ENABLE_PREEMPTION_SERVICE="false")
    assert result.returncode == 1
    assert "ConfigError: JAX's preemption service is off" in result.stderr
    assert "leave it on (the default)" in result.stderr


def test_one_process_turns_sigterm_into_a_flag_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    preemption = loop._Preemption(start_step=3)
    try:
        assert not preemption.reached(4)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.reached(4)
    finally:
        preemption.restore()
    assert signal.getsignal(signal.SIGTERM) is before


# ----------------------------------------------------------------------------- slow tier
TOTAL = 16
STOP_AFTER = 2  # SIGTERM goes to process 1 once process 0 has logged this step
# Log every step; checkpoints only on SIGTERM and at the end; evaluations at 8 and 16.
ARGS = ["train", "--config", SMOKE, "--set", f"total_steps={TOTAL}", "--set", "log_every=1",
        "--set", "checkpoint_every=1000", "--set", f"eval_every={TOTAL // 2}"]
# What training computes (timings and throughput figures differ between any two runs).
TRAINED_KEYS = ("loss", "lr", "grad_norm", "logit_scale", "i2t_loss", "t2i_loss", "i2t_accuracy", "t2i_accuracy")


def _env(data_dir: Path, devices: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADFM_", "SLURM_"))}
    env.update(RADFM_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               # the resumed pair reuses the first pair's compiled programs (compiling dominates)
               JAX_COMPILATION_CACHE_DIR=str(data_dir.parent / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
    return env


def _start(workdir: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "a") as err:
        return subprocess.Popen([sys.executable, "-m", "radfm_jax.cli", *ARGS, "--workdir", str(workdir)],
                                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)


def _start_pair(workdir: Path, data_dir: Path, logs: list[Path]) -> list[subprocess.Popen]:
    coordinator = f"localhost:{_free_port()}"
    return [
        _start(workdir, _env(data_dir, 4, RADFM_COORDINATOR_ADDRESS=coordinator, RADFM_NUM_PROCESSES="2",
                             RADFM_PROCESS_ID=str(index)), logs[index])
        for index in range(2)
    ]


def _wait(processes: list[subprocess.Popen], logs: list[Path], timeout: float = 240) -> None:
    try:
        for process, log in zip(processes, logs):
            code = process.wait(timeout=timeout)
            assert code == 0, f"{log.name} exited {code}:\n{log.read_text()[-5000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _metrics(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]  # whole lines only


def _evals(workdir: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((workdir / "eval").glob("step_????????.json"))}


def _checkpoint_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _assert_close(have: dict, want: dict, where: str, abs_tol: float, keys=None) -> None:
    assert set(have) == set(want), where
    for key in want if keys is None else keys:
        if want[key] is None:
            assert have[key] is None, (where, key)
        else:
            assert have[key] == pytest.approx(want[key], rel=1e-5, abs=abs_tol), (where, key)


@pytest.mark.slow
def test_two_processes_train_preempt_and_resume_like_one_process(tmp_path):
    data_dir, single, multi = tmp_path / "data", tmp_path / "single", tmp_path / "multi"
    logs = [tmp_path / "process0.log", tmp_path / "process1.log"]

    # The reference: one process with 8 devices (it also builds the shared data set once).
    reference = _start(single, _env(data_dir, 8), tmp_path / "single.log")
    _wait([reference], [tmp_path / "single.log"])

    # Two processes x 4 devices; SIGTERM reaches process 1 only, both must stop at one step.
    processes = _start_pair(multi, data_dir, logs)
    deadline = time.monotonic() + 240
    while not (_metrics(multi) and _metrics(multi)[-1]["step"] >= STOP_AFTER):
        assert all(p.poll() is None for p in processes), "\n".join(log.read_text()[-3000:] for log in logs)
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.005)
    processes[1].send_signal(signal.SIGTERM)
    _wait(processes, logs)
    stopped = _metrics(multi)[-1]["step"]
    assert STOP_AFTER <= stopped < TOTAL, f"not stopped mid-way (last step {stopped})"
    for log in logs:
        assert f"SIGTERM: saved step {stopped}" in log.read_text(), log.name
    # JAX's preemption service heard it (no Python handler hid it) and told process 0
    assert "SIGTERM caught" in logs[1].read_text() and "SIGTERM caught" not in logs[0].read_text()
    assert _checkpoint_steps(multi) == [stopped]
    step_dir = multi / "checkpoints" / str(stopped)
    # each process wrote its own data-iterator position and its own array shards
    assert sorted(p.name for p in (step_dir / "data").glob("*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {p.name for p in (step_dir / "state").iterdir()}

    # Resume with two processes: both restore, and the run ends where the reference did.
    for log in logs:
        log.write_text("")
    _wait(_start_pair(multi, data_dir, logs), logs)
    for log in logs:
        assert f"resumed from step {stopped}" in log.read_text(), log.name
    assert _checkpoint_steps(multi) == [stopped, TOTAL]

    # Only process 0 writes: every step once in metrics.jsonl, one TensorBoard file per run.
    want, have = _metrics(single), _metrics(multi)
    assert [r["step"] for r in have] == [r["step"] for r in want] == list(range(1, TOTAL + 1))
    assert len(list((multi / "tensorboard").glob("events.out.tfevents.*"))) == 2
    for w, h in zip(want, have):
        _assert_close(h, w, f"step {w['step']}", abs_tol=1e-6, keys=TRAINED_KEYS)
    assert len({r["loss"] for r in want}) > TOTAL // 2  # the losses do change
    # Embeddings gathered from both processes give the single process's metrics.
    want_evals, have_evals = _evals(single), _evals(multi)
    assert sorted(have_evals) == sorted(want_evals) == [f"step_{s:08d}.json" for s in (TOTAL // 2, TOTAL)]
    for name in want_evals:
        _assert_close(have_evals[name], want_evals[name], name, abs_tol=1e-6)
    assert have_evals[f"step_{TOTAL:08d}.json"]["eval/num_examples"] == 80  # the smoke test split, once

    # Resuming these checkpoints with one process is refused with a message saying why.
    result = subprocess.run([sys.executable, "-m", "radfm_jax.cli", *ARGS, "--workdir", str(multi)],
                            env=_env(data_dir, 8), capture_output=True, text=True, timeout=240, cwd=REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "written by 2 process(es), this run has 1" in result.stderr

