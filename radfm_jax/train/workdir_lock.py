"""An exclusive lock on a WORKDIR, so two runs never write into one folder at the same time.

The lock is the file WORKDIR/radfm.lock, created with O_CREAT | O_EXCL (atomic on local file
systems and on NFSv3+, Lustre, GPFS; not on object-store mounts such as gcsfuse). It holds JSON
naming its owner: host, boot id, pid, the pid's start time, the command, when it started, and
the heartbeat interval. While it is held a daemon thread touches the file every `heartbeat_s`
seconds, so a run on another host can tell a live holder from a dead one.

A lock left behind by a run that is gone is stale and is taken over with a warning:

* same machine (host name and boot id): its pid is not running, is a zombie, or now belongs to
  another process (its start time differs: the pid was reused);
* another machine: its heartbeat is older than `stale_after_s` (measured on the file server's
  clock, so clock skew between hosts does not matter);
* unreadable (a crash while writing it): older than `stale_after_s`; until then it counts as held.

A takeover deletes a lock file only while holding a second, short-lived O_EXCL file
(radfm.lock.takeover) and after checking under it that the file is still the very one judged
stale (same inode, same bytes), then creates its own with O_EXCL: of several runs taking over
at once exactly one wins, and the others see its live lock. Only the primary process of a
multi-process run should take the lock (`enabled=jax.process_index() == 0`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_FILE = "radfm.lock"
_TAKEOVER = LOCK_FILE + ".takeover"
_MUTEX_WAIT_S = 10.0  # how long to wait for another run's takeover (it holds it milliseconds)
_MUTEX_STALE_S = 30.0  # a takeover file this old was left by a crash in the middle of one
_COMMAND_CHARS = 200


def is_lock_file(name: str) -> bool:
    """Whether a name in a workdir belongs to the lock (radfm.lock and its helper files), so
    that checks for an empty workdir can ignore it."""
    return name == LOCK_FILE or name.startswith(LOCK_FILE + ".")


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2:].split()


def _start_ticks(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot)."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True  # cannot tell: assume alive
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))  # a zombie has finished


@dataclass(frozen=True)
class _Seen:
    """One look at a lock file: its bytes and the identity and mtime of the file read."""
    data: bytes
    ino: int
    dev: int
    mtime: float

    @property
    def info(self) -> dict | None:
        try:
            info = json.loads(self.data.decode())
        except (UnicodeDecodeError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def same_file(self, other: _Seen) -> bool:
        return (self.ino, self.dev, self.data) == (other.ino, other.dev, other.data)


def _read(path: Path) -> _Seen | None:
    """The file at `path` as it is now (read and stat'ed through one descriptor), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return _Seen(b"".join(chunks), stat.st_ino, stat.st_dev, stat.st_mtime)


def _create(path: Path, data: bytes) -> int | None:
    """Create `path` holding `data` if no file is there (O_EXCL); its descriptor, or None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    return fd


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _holder_text(info: dict | None, extra: str = "") -> str:
    if info is None:
        return "an unknown run (unreadable lock file)"
    command = str(info.get("command") or "?")
    if len(command) > _COMMAND_CHARS:
        command = command[:_COMMAND_CHARS] + "..."
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} "
            f"({command}, since {info.get('started', '?')}{extra})")


class WorkdirLock:
    """An exclusive lock on `workdir` (see the module doc); a context manager.

        with WorkdirLock(workdir, enabled=multihost.is_primary()):
            ...  # write config.json, metrics.jsonl, checkpoints

    `acquire` creates the workdir if needed and raises ConfigError naming the holder when
    another live run holds it (after waiting up to `wait_s` seconds for it to go, default not
    at all). `release` removes the lock file if it is still this lock's. `lost` turns True if
    the heartbeat finds the file gone or taken over (this run was judged dead: for example
    suspended for longer than `stale_after_s`). With `enabled=False` both are no-ops.
    """

    def __init__(self, workdir: str | Path, *, heartbeat_s: float = 30.0,
                 stale_after_s: float | None = None, wait_s: float = 0.0, enabled: bool = True):
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s}")
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.heartbeat_s = float(heartbeat_s)
        self.stale_after_s = float(stale_after_s if stale_after_s is not None else 10 * heartbeat_s)
        self.wait_s = float(wait_s)
        self.enabled = enabled
        self.lost = False
        self.host = socket.gethostname()
        self._boot_id = _boot_id()
        self._token = uuid.uuid4().hex
        self._fd: int | None = None
        self._content = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- acquiring ---------------------------------------------------------------------------

    def acquire(self) -> WorkdirLock:
        if not self.enabled:
            return self
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this WorkdirLock")
        self._make_workdir()
        self._content = self._describe_self()
        deadline = time.monotonic() + self.wait_s
        for _ in range(10_000):  # every turn round is progress by another run
            try:
                fd = _create(self.path, self._content)
            except OSError as err:
                raise ConfigError(f"cannot create the lock file {self.path} ({err.strerror}); "
                                  "choose a workdir you can write to") from None
            if fd is not None:
                return self._start(fd)
            seen = _read(self.path)
            if seen is None:
                continue  # released in between: try again
            stale, reason = self._judge(seen)
            if stale:
                fd = self._take_over(seen, reason)
                if fd is not None:
                    return self._start(fd)
                continue
            if time.monotonic() < deadline:
                time.sleep(min(1.0, self.heartbeat_s, max(0.01, deadline - time.monotonic())))
                continue
            raise ConfigError(self._refusal(seen))
        raise ConfigError(f"could not take the lock {self.path}: other runs keep taking and "
                          "releasing it")

    def _make_workdir(self) -> None:
        if self.workdir.exists() and not self.workdir.is_dir():
            raise ConfigError(f"workdir '{self.workdir}' exists and is not a directory; choose another path")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the workdir '{self.workdir}' ({err.strerror}); "
                              "choose a folder you can write to") from None

    def _describe_self(self) -> bytes:
        argv = list(sys.argv) or ["python"]
        argv[0] = os.path.basename(argv[0]) or argv[0]
        info = {
            "host": self.host,
            "pid": os.getpid(),
            "boot_id": self._boot_id,
            "start_ticks": _start_ticks(os.getpid()),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(argv),
            "heartbeat_s": self.heartbeat_s,
            "token": self._token,
        }
        return (json.dumps(info) + "\n").encode()

    def _same_machine(self, info: dict) -> bool:
        if info.get("host") != self.host:
            return False
        boot_id = info.get("boot_id")
        # Same name, another boot id: rebooted since (its pids mean nothing now) or another
        # machine of the same name; either way the heartbeat decides.
        return boot_id is None or self._boot_id is None or boot_id == self._boot_id

    def _judge(self, seen: _Seen) -> tuple[bool, str]:
        """Whether the lock seen is stale, and why (or why not)."""
        info = seen.info
        if info is not None and self._same_machine(info) and isinstance(info.get("pid"), int):
            pid = info["pid"]
            if not _pid_alive(pid):
                return True, f"pid {pid} is not running"
            recorded, now = info.get("start_ticks"), _start_ticks(pid)
            if isinstance(recorded, int) and now is not None and now != recorded:
                return True, f"pid {pid} now belongs to another process"
            return False, f"pid {pid} is running"
        limit = self.stale_after_s
        if info is not None:
            try:  # never judge a holder by a heartbeat shorter than its own
                limit = max(limit, 3 * float(info.get("heartbeat_s") or 0))
            except (TypeError, ValueError):
                pass
        age = self._fs_now() - seen.mtime
        what = "unreadable and unchanged" if info is None else "without a heartbeat"
        return age > limit, f"{what} for {age:.0f}s (limit {limit:.0f}s)"

    def _fs_now(self) -> float:
        """Now on the clock that stamps files in the workdir (the file server's, on NFS)."""
        probe = self.workdir / f"{LOCK_FILE}.probe.{self._token}.{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            return time.time()
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            _unlink(probe)

    def _take_over(self, seen: _Seen, reason: str) -> int | None:
        """Replace the stale lock `seen` by ours; our descriptor, or None if another run got
        there first (or the lock changed since it was seen)."""
        mutex = self._lock_mutex()
        if mutex is None:
            return None
        try:
            now = _read(self.path)
            if now is not None:
                if not now.same_file(seen):
                    return None  # taken over or refreshed meanwhile: judge it again
                _unlink(self.path)
                log.warning("workdir '%s': taking over the lock of %s: %s", self.workdir,
                            _holder_text(seen.info), reason)
            return _create(self.path, self._content)
        finally:
            self._unlock_mutex(mutex)

    def _lock_mutex(self, wait_s: float = _MUTEX_WAIT_S) -> int | None:
        """Hold radfm.lock.takeover (the right to delete a lock file that is not ours)."""
        path = self.workdir / _TAKEOVER
        deadline = time.monotonic() + wait_s
        while True:
            fd = _create(path, self._content)
            if fd is not None:
                return fd
            seen = _read(path)
            if seen is not None and self._mutex_stale(seen):
                # left by a crash during a takeover: set it aside (by rename, so of several
                # runs doing this only one succeeds) and put back anything fresh it caught
                aside = path.with_name(f"{_TAKEOVER}.{self._token}")
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                moved = _read(aside)
                if moved is not None and not moved.same_file(seen):
                    try:
                        os.link(aside, path)
                    except OSError:
                        pass
                _unlink(aside)
                log.warning("workdir '%s': removed the takeover file of %s", self.workdir,
                            _holder_text(seen.info))
                continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def _mutex_stale(self, seen: _Seen) -> bool:
        info = seen.info
        if info is not None and self._same_machine(info) and isinstance(info.get("pid"), int):
            if not _pid_alive(info["pid"]):
                return True
        return self._fs_now() - seen.mtime > _MUTEX_STALE_S

    def _unlock_mutex(self, fd: int) -> None:
        os.close(fd)
        path = self.workdir / _TAKEOVER
        seen = _read(path)
        if seen is not None and seen.data == self._content:
            _unlink(path)

    def _refusal(self, seen: _Seen) -> str:
        info = seen.info
        if info is None:
            holder = (f"another run (its lock file is unreadable, written "
                      f"{max(0.0, self._fs_now() - seen.mtime):.0f}s ago)")
        else:
            extra = ("" if self._same_machine(info) else
                     f", last heartbeat {max(0.0, self._fs_now() - seen.mtime):.0f}s ago")
            holder = _holder_text(info, extra)
        return (f"workdir '{self.workdir}' is in use by {holder}; wait for it to finish, or if "
                f"that run is gone, delete {self.path}")

    # -- holding and releasing ---------------------------------------------------------------

    def _start(self, fd: int) -> WorkdirLock:
        self._fd = fd
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"radfm-lock-{self.workdir.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _ours(self) -> bool:
        """Whether the lock file is still the one this lock created."""
        seen = _read(self.path)
        if seen is None or self._fd is None:
            return False
        try:
            stat = os.fstat(self._fd)
        except OSError:
            return False
        return (seen.ino, seen.dev, seen.data) == (stat.st_ino, stat.st_dev, self._content)

    def _beat(self) -> None:
        failed = False
        while not self._stop.wait(self.heartbeat_s):
            fd = self._fd
            if fd is None:
                return
            try:
                if os.utime in os.supports_fd:
                    os.utime(fd)
                else:
                    os.utime(self.path)
                failed = False
            except OSError as err:
                if not failed:
                    log.warning("workdir '%s': cannot refresh the lock %s (%s)", self.workdir,
                                self.path, err.strerror)
                failed = True
            if self._stop.is_set():
                return
            try:
                ours = self._ours()
            except OSError:
                continue
            if not ours and not self._stop.is_set():
                self.lost = True
                seen = _read(self.path)
                log.error("workdir '%s': this run's lock %s was taken over by %s; another run "
                          "may now write into this workdir", self.workdir, self.path,
                          "nobody (it was deleted)" if seen is None else _holder_text(seen.info))
                return

    def release(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        try:
            # Under the takeover file, so no takeover can slip in between check and delete;
            # without it (a crashed takeover left it), check and delete anyway.
            mutex = self._lock_mutex(wait_s=2.0)
            try:
                if self._ours():
                    _unlink(self.path)
                else:
                    log.warning("workdir '%s': not removing %s: it is no longer this run's",
                                self.workdir, self.path)
            finally:
                if mutex is not None:
                    self._unlock_mutex(mutex)
        except OSError as err:
            log.warning("workdir '%s': cannot remove the lock %s (%s)", self.workdir, self.path,
                        err.strerror)
        finally:
            os.close(self._fd)
            self._fd = None


def read_lock(workdir: str | Path) -> dict | None:
    """The holder named by WORKDIR/radfm.lock ({} if unreadable), or None if there is none; for
    tools that report on a workdir. Says nothing about whether the holder is alive."""
    seen = _read(Path(workdir) / LOCK_FILE)
    if seen is None:
        return None
    return seen.info or {}
