"""Fault injection, as on a shared cluster: `radfm train` subprocesses are killed, their
checkpoints corrupted, their disk filled, two of them raced on one workdir, and their loss driven
non-finite. For each fault: one clear message (no traceback) and a non-zero exit, and every
checkpoint that was good before the fault is still bit-identical to the uninterrupted run's and
resumes to its losses.

Slow tier. The runs share one JAX compilation cache, so only the first one compiles."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"
TOTAL, EVERY = 12, 3
RUN = ["--config", SMOKE, "--set", f"total_steps={TOTAL}", "--set", f"checkpoint_every={EVERY}",
       "--set", "log_every=1", "--set", "eval_every=0", "--set", "keep_checkpoints=10"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("jax_cache")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    env.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    env.pop("XLA_FLAGS", None)  # one CPU device
    return env


def command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "radfm_jax.cli", "train", *RUN, "--workdir", str(workdir), *extra]


def train(env: dict, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(workdir, *extra), env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The fault's report: non-zero exit, no traceback, one line printed last."""
    assert result.returncode not in (0, None), result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-5000:]
    marker = "radfm train: error: "
    assert marker in result.stderr, result.stderr[-3000:]
    message = result.stderr[result.stderr.index(marker):]
    assert message.strip().count("\n") == 0, message
    return message


def losses(workdir: Path) -> dict[int, float]:
    lines = (workdir / "metrics.jsonl").read_text().split("\n")[:-1]  # whole lines only
    return {record["step"]: record["loss"] for record in map(json.loads, lines)}


def checkpoint_steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def stored_state(workdir: Path, step: int) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint as saved, read back by orbax without a target."""
    import jax
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore((workdir / "checkpoints" / str(step) / "state").absolute())
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory) -> Path:
    """The uninterrupted run: a checkpoint every 3 steps, all kept."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    result = train(env, workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    assert checkpoint_steps(workdir) == list(range(EVERY, TOTAL + 1, EVERY))
    return workdir


def assert_good_checkpoints_kept(workdir: Path, reference: Path, steps: list[int]) -> None:
    """Each of `steps` is still there and holds exactly the uninterrupted run's arrays."""
    assert set(steps) <= set(checkpoint_steps(workdir)), (steps, checkpoint_steps(workdir))
    for step in steps:
        want, have = stored_state(reference, step), stored_state(workdir, step)
        assert want.keys() == have.keys()
        for name in want:
            np.testing.assert_array_equal(have[name], want[name], err_msg=f"step {step} {name}")


def assert_resumes_to_reference(env: dict, workdir: Path, reference: Path, resume_step: int, *extra: str) -> None:
    result = train(env, workdir, *extra)
    assert result.returncode == 0, result.stderr[-5000:]
    assert f"resumed from step {resume_step}" in result.stderr
    want, have = losses(reference), losses(workdir)
    assert sorted(have) == sorted(want) == list(range(1, TOTAL + 1))
    for step in want:
        assert have[step] == pytest.approx(want[step], rel=1e-6, abs=1e-6), step
    assert checkpoint_steps(workdir)[-1] == TOTAL


def copy_without_steps_after(reference: Path, destination: Path, last: int) -> Path:
    """The reference workdir as it would be had the run stopped after checkpoint `last`."""
    workdir = Path(shutil.copytree(reference, destination))
    for step in checkpoint_steps(workdir):
        if step > last:
            shutil.rmtree(workdir / "checkpoints" / str(step))
    return workdir


def test_kill_9_mid_run_loses_nothing_saved(env, reference, tmp_path):
    workdir = tmp_path / "run"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command(workdir), env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        try:
            deadline = time.monotonic() + 300
            while not ((workdir / "metrics.jsonl").is_file() and max(losses(workdir), default=0) >= 2 * EVERY + 1):
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = checkpoint_steps(workdir)
    # saves are asynchronous: step 6's may have been cut short, step 3's had finished before it began
    assert saved and saved[-1] >= EVERY, saved
    assert_good_checkpoints_kept(workdir, reference, saved)
    assert_resumes_to_reference(env, workdir, reference, saved[-1])


def flip_bits(step_dir: Path) -> None:
    """One bit in the middle of the largest stored data file: array bytes, which the storage
    layer reads back without complaint (its index nodes are checksummed, its chunks not)."""
    largest = max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                  key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x10
    largest.write_bytes(bytes(data))


def test_flipped_bits_in_the_newest_checkpoint_are_caught_and_the_previous_one_resumes(env, reference, tmp_path):
    workdir = copy_without_steps_after(reference, tmp_path / "run", TOTAL)
    flip_bits(workdir / "checkpoints" / str(TOTAL))
    message = one_line_error(train(env, workdir))
    assert f"checkpoints/{TOTAL} is damaged" in message and "checksums" in message, message
    assert "--resume-from-previous" in message and f"resume from step {TOTAL - EVERY}" in message, message
    assert checkpoint_steps(workdir) == list(range(EVERY, TOTAL + 1, EVERY))  # nothing moved or deleted

    assert_resumes_to_reference(env, workdir, reference, TOTAL - EVERY, "--resume-from-previous")
    assert_good_checkpoints_kept(workdir, reference, list(range(EVERY, TOTAL + 1, EVERY)))
    kept = list((workdir / "damaged_checkpoints").iterdir())  # the damaged step is set aside, not deleted
    assert [p.name.split(".")[0] for p in kept] == [str(TOTAL)]


def test_non_finite_loss_is_never_saved_and_names_the_last_good_checkpoint(env, reference, tmp_path):
    workdir = copy_without_steps_after(reference, tmp_path / "run", 2 * EVERY)
    message = one_line_error(train(env, workdir, "--set", "optim.learning_rate=1e30", "--allow-config-change"))
    assert "non-finite" in message and f"last good checkpoint is step {2 * EVERY}" in message, message
    assert checkpoint_steps(workdir) == [EVERY, 2 * EVERY]  # nothing non-finite was saved or pushed them out
    assert_good_checkpoints_kept(workdir, reference, [EVERY, 2 * EVERY])
    assert_resumes_to_reference(env, workdir, reference, 2 * EVERY, "--allow-config-change")


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k none {tmp_path}"],
                           capture_output=True)
    return shutil.which("unshare") is not None and probe.returncode == 0


def tmpfs_bytes(paths) -> int:
    page = 4096
    return sum(-(-p.stat().st_size // page) * page for p in paths if p.is_file())


def _in_checkpoint_after(path: Path, workdir: Path, step: int) -> bool:
    parts = path.relative_to(workdir).parts
    return len(parts) > 1 and parts[0] == "checkpoints" and parts[1].isdigit() and int(parts[1]) > step


def test_disk_full_is_one_line_and_keeps_the_earlier_checkpoints(env, reference, tmp_path):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if not _can_mount_tmpfs(mount):
        pytest.skip("needs `unshare -m` and tmpfs mounts (root or user namespaces)")
    # Room for the reference's first two checkpoints and its logs, and half a third: tmpfs
    # charges whole pages per file, and checkpoints differ in their number of files.
    two_checkpoints = tmpfs_bytes(p for p in reference.rglob("*") if not _in_checkpoint_after(p, reference, 2 * EVERY))
    third = tmpfs_bytes((reference / "checkpoints" / str(3 * EVERY)).rglob("*"))
    size_kib = (two_checkpoints + third // 2) // 1024
    saved = tmp_path / "saved"
    # The file system exists only in this mount namespace: copy what the run left out of it.
    script = (f"mount -t tmpfs -o size={size_kib}k none {mount} && "
              f"{' '.join(command(mount / 'run'))} 2>{tmp_path / 'stderr'} >{tmp_path / 'stdout'}; "
              f"code=$?; cp -a {mount / 'run'} {saved}; exit $code")
    finished = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, timeout=600, cwd=REPO)
    result = subprocess.CompletedProcess(finished.args, finished.returncode, (tmp_path / "stdout").read_text(),
                                         (tmp_path / "stderr").read_text())
    message = one_line_error(result)
    assert "no space left" in message and str(mount) in message, message
    kept = checkpoint_steps(saved)
    assert kept == [EVERY, 2 * EVERY], kept
    assert_good_checkpoints_kept(saved, reference, kept)
    assert_resumes_to_reference(env, saved, reference, 2 * EVERY)


def test_two_runs_raced_on_one_workdir_one_trains_the_other_is_refused(env, reference, tmp_path):
    workdir = tmp_path / "run"
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    processes = [subprocess.Popen(command(workdir), env=env, stdout=subprocess.PIPE, stderr=open(log, "w"),
                                  text=True, cwd=REPO) for log in logs]
    results = [subprocess.CompletedProcess(p.args, p.wait(timeout=600), p.stdout.read(), log.read_text())
               for p, log in zip(processes, logs)]
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] != 0, [r.stderr[-2000:] for r in results]
    loser = next(r for r in results if r.returncode)
    message = one_line_error(loser)
    assert "is in use by pid" in message and "radfm.lock" in message, message
    winner_pid = next(p.pid for p, r in zip(processes, results) if r.returncode == 0)
    assert f"pid {winner_pid} " in message, message
    # the winner's run is exactly the uninterrupted one: nothing interleaved, and the lock is gone
    assert losses(workdir) == pytest.approx(losses(reference), rel=1e-6, abs=1e-6)
    assert_good_checkpoints_kept(workdir, reference, list(range(EVERY, TOTAL + 1, EVERY)))
    assert not (workdir / "radfm.lock").exists()
