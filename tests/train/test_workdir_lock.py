"""WorkdirLock: one run per workdir, stale locks taken over, races won by exactly one."""

import json
import logging
import multiprocessing
import os
import socket
import subprocess
import threading
import time

import pytest

from radfm_jax.errors import ConfigError
from radfm_jax.train import workdir_lock
from radfm_jax.train.workdir_lock import LOCK_FILE, WorkdirLock, is_lock_file, read_lock


def _dead_pid() -> int:
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    return child.pid


def _write_lock(workdir, *, age_s: float = 0.0, raw: bytes | None = None, **fields):
    """A lock file as another run would have left it, last touched `age_s` seconds ago."""
    workdir.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": _dead_pid(), "boot_id": workdir_lock._boot_id(),
            "start_ticks": None, "started": "2024-01-01T00:00:00+00:00",
            "command": "radfm train --old-run", "heartbeat_s": 30.0, "token": "old"}
    info.update(fields)
    path = workdir / LOCK_FILE
    path.write_bytes(raw if raw is not None else (json.dumps(info) + "\n").encode())
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def _leftovers(workdir):
    return sorted(p.name for p in workdir.iterdir() if is_lock_file(p.name) and p.name != LOCK_FILE)


def test_acquire_creates_workdir_and_release_removes_the_file(tmp_path):
    workdir = tmp_path / "new" / "run"
    with WorkdirLock(workdir) as lock:
        assert lock.held
        info = json.loads((workdir / LOCK_FILE).read_text())
        assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
        assert info["started"] and info["command"] and info["heartbeat_s"] == 30.0
        assert read_lock(workdir)["pid"] == os.getpid()
    assert not lock.held
    assert list(workdir.iterdir()) == []
    assert read_lock(workdir) is None
    with WorkdirLock(workdir):  # and it can be taken again
        pass


def test_second_acquire_is_refused_naming_the_holder(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(ConfigError) as err:
            WorkdirLock(tmp_path).acquire()
    message = str(err.value)
    assert "\n" not in message
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert f"delete {tmp_path / LOCK_FILE}" in message and f"'{tmp_path}' is in use" in message
    assert not (tmp_path / LOCK_FILE).exists()  # the refused one did not remove the holder's


def test_disabled_lock_does_nothing(tmp_path):
    with WorkdirLock(tmp_path, enabled=False) as lock:
        assert not lock.held and not (tmp_path / LOCK_FILE).exists()
        with WorkdirLock(tmp_path):  # the primary's lock is unaffected
            pass


def test_workdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        WorkdirLock(tmp_path / "file").acquire()


def test_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path, caplog):
    path = _write_lock(tmp_path)
    old_pid = json.loads(path.read_text())["pid"]
    with caplog.at_level(logging.WARNING, logger=workdir_lock.__name__):
        with WorkdirLock(tmp_path):
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"pid {old_pid} on host {socket.gethostname()}" in caplog.text
    assert "not running" in caplog.text
    assert not path.exists() and _leftovers(tmp_path) == []


@pytest.mark.skipif(workdir_lock._start_ticks(os.getpid()) is None, reason="no /proc")
def test_reused_pid_is_recognised_by_its_start_time(tmp_path):
    ticks = workdir_lock._start_ticks(os.getpid())
    _write_lock(tmp_path, pid=os.getpid(), start_ticks=ticks)  # this very process: alive
    with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        WorkdirLock(tmp_path).acquire()
    _write_lock(tmp_path, pid=os.getpid(), start_ticks=ticks - 1)  # a process before it
    with WorkdirLock(tmp_path):
        pass


def test_lock_from_another_host_goes_by_its_heartbeat(tmp_path, caplog):
    _write_lock(tmp_path, host="gpu-node-7", pid=4242, age_s=5)
    with pytest.raises(ConfigError, match=r"pid 4242 on host gpu-node-7 \(radfm train --old-run, "
                                          r"since 2024-01-01T00:00:00\+00:00, last heartbeat \d+s ago\)"):
        WorkdirLock(tmp_path).acquire()
    # The same host name after a reboot (another boot id) also goes by the heartbeat.
    _write_lock(tmp_path, pid=4242, boot_id="another-boot", age_s=5)
    with pytest.raises(ConfigError, match="pid 4242"):
        WorkdirLock(tmp_path).acquire()
    # A holder with a longer heartbeat than ours is judged by its own.
    _write_lock(tmp_path, host="gpu-node-7", pid=4242, heartbeat_s=1000.0, age_s=400)
    with pytest.raises(ConfigError, match="pid 4242"):
        WorkdirLock(tmp_path).acquire()
    _write_lock(tmp_path, host="gpu-node-7", pid=4242, age_s=400)  # default limit 300 s
    with caplog.at_level(logging.WARNING, logger=workdir_lock.__name__):
        with WorkdirLock(tmp_path):
            assert read_lock(tmp_path)["host"] == socket.gethostname()
    assert "gpu-node-7" in caplog.text and "heartbeat" in caplog.text
    _write_lock(tmp_path, host="gpu-node-7", pid=4242, heartbeat_s=0.1, age_s=3)
    with WorkdirLock(tmp_path, heartbeat_s=0.1, stale_after_s=1.0):
        pass
    assert _leftovers(tmp_path) == []


def test_garbled_lock_counts_as_held_until_it_is_old(tmp_path):
    _write_lock(tmp_path, raw=b'{"host": "gpu-no')
    with pytest.raises(ConfigError, match=r"in use by another run \(its lock file is unreadable"):
        WorkdirLock(tmp_path).acquire()
    _write_lock(tmp_path, raw=b"", age_s=400)
    with WorkdirLock(tmp_path):
        pass


def test_wait_s_waits_for_the_holder_to_finish(tmp_path):
    holder = WorkdirLock(tmp_path).acquire()
    threading.Timer(0.3, holder.release).start()
    start = time.monotonic()
    with WorkdirLock(tmp_path, wait_s=10, heartbeat_s=0.05):
        assert time.monotonic() - start >= 0.2


def test_heartbeat_refreshes_the_mtime(tmp_path):
    with WorkdirLock(tmp_path, heartbeat_s=0.02) as lock:
        path = tmp_path / LOCK_FILE
        os.utime(path, (time.time() - 1000, time.time() - 1000))
        deadline = time.monotonic() + 10
        while time.time() - path.stat().st_mtime > 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.time() - path.stat().st_mtime < 100
        assert not lock.lost


def test_release_keeps_a_lock_that_another_run_took_over(tmp_path, caplog):
    lock = WorkdirLock(tmp_path, heartbeat_s=0.02).acquire()
    path = tmp_path / LOCK_FILE
    path.unlink()  # as a takeover does, after judging this run dead
    _write_lock(tmp_path, host="gpu-node-7", pid=99, token="new")
    deadline = time.monotonic() + 10
    with caplog.at_level(logging.WARNING, logger=workdir_lock.__name__):
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.lost
        lock.release()
    assert "taken over by pid 99 on host gpu-node-7" in caplog.text
    assert json.loads(path.read_text())["token"] == "new"
    assert _leftovers(tmp_path) == []


def _race_worker(workdir, rounds, barrier, results):
    for round_ in range(rounds):
        barrier.wait(timeout=120)  # the parent has set the round up
        lock = WorkdirLock(workdir)
        try:
            lock.acquire()
            won = True
        except ConfigError:
            won = False
        results.put((round_, os.getpid(), won))
        barrier.wait(timeout=120)  # every racer has tried
        if won:
            lock.release()
        barrier.wait(timeout=120)  # the winner has let go


def test_racing_runs_exactly_one_wins(tmp_path):
    racers, rounds = 3, 100
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(racers + 1), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(tmp_path, rounds, barrier, results), daemon=True)
             for _ in range(racers)]
    for proc in procs:
        proc.start()
    finished = False
    try:
        for round_ in range(rounds):
            if round_ % 2:  # odd rounds: all race to take over a dead run's lock
                _write_lock(tmp_path)
            barrier.wait(timeout=120)
            barrier.wait(timeout=120)
            outcomes = [results.get(timeout=60) for _ in range(racers)]
            assert {r for r, _, _ in outcomes} == {round_}
            assert sum(won for _, _, won in outcomes) == 1, (round_, outcomes)
            barrier.wait(timeout=120)
            assert not (tmp_path / LOCK_FILE).exists()
            assert _leftovers(tmp_path) == []
        finished = True
    finally:
        if not finished:
            barrier.abort()  # a failed round: let the racers stop at once
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
