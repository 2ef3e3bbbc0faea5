"""How a user's error reaches them: one line, not buried under the reports of background work
the failure abandoned. Standard library only, so the CLI can set it up before importing JAX."""

from __future__ import annotations

import gc
import inspect
import os
import sys
import threading
from collections.abc import Callable


def _loop_closed(exc: BaseException | None) -> bool:
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def filter_abandoned_reads() -> Callable[[], None]:
    """Drop the reports of tensorstore reads a failed restore abandoned; returns the function
    that puts the previous hooks back.

    After a failed restore, orbax has closed its event loop while reads of other arrays are
    still finishing; each then reports 'Event loop is closed' (or an abandoned orbax coroutine)
    through sys.excepthook (from tensorstore's own threads), sys.unraisablehook or
    threading.excepthook, burying the one-line error under hundreds of traceback lines, some
    of them after the command has returned. Anything else still reaches the previous hooks."""
    previous = sys.excepthook, sys.unraisablehook, threading.excepthook
    orbax_dir = f"{os.sep}orbax{os.sep}"

    def excepthook(kind, exc, traceback):
        if not _loop_closed(exc):
            previous[0](kind, exc, traceback)

    def unraisablehook(unraisable):
        obj = unraisable.object
        if _loop_closed(unraisable.exc_value) or (inspect.iscoroutine(obj) and orbax_dir in obj.cr_code.co_filename):
            return
        previous[1](unraisable)

    def thread_hook(args):
        if not _loop_closed(args.exc_value):
            previous[2](args)

    sys.excepthook, sys.unraisablehook, threading.excepthook = excepthook, unraisablehook, thread_hook

    def restore() -> None:
        gc.collect()  # abandoned coroutines report when collected: while the filter is active
        sys.excepthook, sys.unraisablehook, threading.excepthook = previous

    return restore
