"""Skip accounting: the records a build leaves out, counted by reason, and what it writes."""

from __future__ import annotations

import collections
import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Skip reasons used across builders (a builder may add its own).
MISSING_FILE = "missing_file"
UNREADABLE_IMAGE = "unreadable_image"
EMPTY_REPORT = "empty_report"
UNPARSEABLE_ROW = "unparseable_row"
DUPLICATE_ROW = "duplicate_row"
SKIPPED_RECORDS_FILE = "skipped_records.log"  # every skipped record, written by `report`
_EXAMPLES_PER_REASON = 5  # kept in the summary
_EXAMPLES_PER_WARNING = 2  # named in a reason's warning line


def _one_field(text: str) -> str:
    """A value that cannot break the details file's tab-separated lines."""
    return re.sub(r"[\t\r\n]+", " ", text)


class SkipLog:
    """Counts, by reason, the records a build skips and the examples it writes per split;
    `summary()` goes into the data set's metadata, and `report()` writes every skipped record
    to a file and logs one warning per reason (a real copy can have hundreds)."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.skipped: collections.Counter[str] = collections.Counter()
        self.filtered: collections.Counter[str] = collections.Counter()
        self.written: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)
        self.records: list[tuple[str, str, str]] = []  # (reason, path, detail) of every skip

    def skip(self, reason: str, path: str | os.PathLike, detail: str = "") -> None:
        """A bad record: counted, kept with its path for `report`, and left out."""
        path = os.fspath(path)
        self.skipped[reason] += 1
        if len(self.examples[reason]) < _EXAMPLES_PER_REASON:
            self.examples[reason].append(path)
        self.records.append((reason, path, detail))
        log.debug("%s: skipped %s (%s)%s", self.dataset, path, reason, f": {detail}" if detail else "")

    def filter(self, reason: str) -> None:
        """A good record the build's options leave out (e.g. a lateral view): counted only."""
        self.filtered[reason] += 1

    def wrote(self, split: str) -> None:
        self.written[split] += 1

    def summary(self) -> dict[str, Any]:
        return {"written": dict(self.written), "skipped": dict(self.skipped),
                "filtered": dict(self.filtered), "skipped_examples": dict(self.examples)}

    def describe(self) -> str:
        written = ", ".join(f"{s} {n}" for s, n in self.written.items()) or "nothing"
        skipped = ", ".join(f"{r} {n}" for r, n in self.skipped.most_common()) or "none"
        filtered = ", ".join(f"{r} {n}" for r, n in self.filtered.most_common()) or "none"
        return f"{self.dataset}: wrote {written}; skipped {skipped}; filtered out {filtered}"

    def report(self, folder: str | os.PathLike) -> Path | None:
        """Writes every skipped record to folder/SKIPPED_RECORDS_FILE (tab-separated reason,
        path, detail; one a line, after a header) and logs one warning per reason with its
        count and first paths. Returns the file, or None (and writes nothing) when nothing
        was skipped."""
        if not self.records:
            return None
        path = Path(folder) / SKIPPED_RECORDS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("reason\tpath\tdetail\n")
            handle.writelines("\t".join(map(_one_field, record)) + "\n" for record in self.records)
        for reason, count in self.skipped.most_common():
            log.warning("%s: skipped %d record(s) as %s, e.g. %s; all are listed in %s", self.dataset,
                        count, reason, ", ".join(self.examples[reason][:_EXAMPLES_PER_WARNING]), path)
        return path
