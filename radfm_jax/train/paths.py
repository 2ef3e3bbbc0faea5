"""Workdir paths through `etils.epath`, so `--workdir gs://bucket/run` works like a local folder:
every read and write under a workdir goes through the `epath.Path` these return."""

from __future__ import annotations

import os

from etils import epath


def is_local(path: epath.PathLike) -> bool:
    """Whether `path` is on a POSIX file system (not an object store such as gs:// or s3://)."""
    return "://" not in os.fspath(path)


def workdir_path(path: epath.PathLike) -> epath.Path:
    """The workdir as an epath.Path; local ones made absolute (orbax needs absolute folders)."""
    path = epath.Path(path)
    return path.absolute() if is_local(path) else path
