"""Finding and reading the files of the user's copy of a data set (its manual folder): every
missing folder, file or column is a ConfigError that names it and the expected layout."""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from radfm_jax.errors import ConfigError


def require_manual_dir(manual_dir: str | os.PathLike | None, dataset: str, layout: str) -> Path:
    """The user's copy of the data set; a ConfigError naming the layout when it is not there."""
    if not manual_dir:
        raise ConfigError(
            f"{dataset}: no manual folder given; set --set data.manual_dir=/path/to/your/copy "
            f"laid out as:\n{layout}")
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{dataset}: manual folder '{path}' does not exist or is not a folder; "
                          f"expected layout:\n{layout}")
    return path


def find_first(root: Path, candidates: Sequence[str]) -> Path | None:
    """The first of the relative paths `candidates` that exists under root."""
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    return None


def require_files(root: Path, dataset: str, required: Mapping[str, Sequence[str]],
                  layout: str) -> dict[str, Path]:
    """{role: path} for each role's first existing candidate; one ConfigError naming every
    role that has none."""
    found = {role: find_first(root, names) for role, names in required.items()}
    missing = [" or ".join(required[role]) for role, path in found.items() if path is None]
    if missing:
        raise ConfigError(f"{dataset}: missing in manual folder '{root}': {'; '.join(missing)}. "
                          f"Expected layout:\n{layout}")
    return found  # type: ignore[return-value]


def read_csv_rows(path: Path, dataset: str, columns: Iterable[str]) -> Iterator[dict[str, str]]:
    """Rows of a .csv or .csv.gz as {column: text}; a ConfigError names columns it lacks."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError(f"{dataset}: '{path}' lacks the column(s) {missing}; its header is "
                              f"{header[:20]}. Is it the published file?")
        yield from reader


def read_text_file(path: Path) -> str:
    """A report file as text (UTF-8, undecodable bytes replaced)."""
    return path.read_text(encoding="utf-8", errors="replace")
