"""How a user's error reaches them: one line, not buried under the reports of background work
the failure abandoned. Standard library only, so the CLI can set it up before importing JAX."""

from __future__ import annotations

import errno
import gc
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Callable

# How tensorstore and orbax word ENOSPC: "... Failed writing: "PATH": ... No space left on
# device [os_error_code='28']".
_NO_SPACE = os.strerror(errno.ENOSPC)
_FAILED_PATH = re.compile(r'(?:Failed writing|Error writing|Failed to open|Error opening)[^"]*"([^"]+)"')


def _loop_closed(exc: BaseException | None) -> bool:
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def out_of_space(exc: BaseException | None) -> str | None:
    """If `exc` (or an exception it was raised from) is a write that ran out of space, the path
    being written ("" when the error does not say); otherwise None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return str(exc.filename or "")
        text = str(exc)
        if _NO_SPACE in text:
            paths = _FAILED_PATH.findall(text)
            return paths[-1] if paths else ""
        exc = exc.__cause__ or exc.__context__
    return None


class _DropOutOfSpace(logging.Filter):
    """Background writers (orbax threads, asyncio tasks) log each failed write of a full disk
    with its traceback; the command reports it once, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if out_of_space(exc) is not None:
            return False
        try:
            return _NO_SPACE not in record.getMessage()
        except Exception:  # a record whose arguments do not format: let the handler report it
            return True


def drop_out_of_space_logs() -> None:
    """Filter the root logger's handlers (set them up first): a full disk is reported once, by
    the command, as one line."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropOutOfSpace())


def _silenced(exc: BaseException | None) -> bool:
    return _loop_closed(exc) or out_of_space(exc) is not None


def filter_abandoned_reads() -> Callable[[], None]:
    """Drop the reports of tensorstore reads a failed restore abandoned, and of background
    writes that found the disk full (the command reports that once); returns the function
    that puts the previous hooks back.

    After a failed restore, orbax has closed its event loop while reads of other arrays are
    still finishing; each then reports 'Event loop is closed' (or an abandoned orbax coroutine)
    through sys.excepthook (from tensorstore's own threads), sys.unraisablehook or
    threading.excepthook, burying the one-line error under hundreds of traceback lines, some
    of them after the command has returned. Anything else still reaches the previous hooks."""
    previous = sys.excepthook, sys.unraisablehook, threading.excepthook
    orbax_dir = f"{os.sep}orbax{os.sep}"

    def excepthook(kind, exc, traceback):
        if not _silenced(exc):
            previous[0](kind, exc, traceback)

    def unraisablehook(unraisable):
        obj = unraisable.object
        if _silenced(unraisable.exc_value) or (inspect.iscoroutine(obj) and orbax_dir in obj.cr_code.co_filename):
            return
        previous[1](unraisable)

    def thread_hook(args):
        if not _silenced(args.exc_value):
            previous[2](args)

    sys.excepthook, sys.unraisablehook, threading.excepthook = excepthook, unraisablehook, thread_hook

    def restore() -> None:
        gc.collect()  # abandoned coroutines report when collected: while the filter is active
        sys.excepthook, sys.unraisablehook, threading.excepthook = previous

    return restore
