"""Skip accounting: the records a build leaves out, counted by reason, and what it writes."""

from __future__ import annotations

import collections
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# Skip reasons used across builders (a builder may add its own).
MISSING_FILE = "missing_file"
UNREADABLE_IMAGE = "unreadable_image"
EMPTY_REPORT = "empty_report"
UNPARSEABLE_ROW = "unparseable_row"
DUPLICATE_ROW = "duplicate_row"
_EXAMPLES_PER_REASON = 5


class SkipLog:
    """Counts, by reason, the records a build skips (each logged with its path) and the
    examples it writes per split; `summary()` goes into the data set's metadata."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.skipped: collections.Counter[str] = collections.Counter()
        self.filtered: collections.Counter[str] = collections.Counter()
        self.written: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def skip(self, reason: str, path: str | os.PathLike, detail: str = "") -> None:
        """A bad record: counted, logged with its path, and left out."""
        self.skipped[reason] += 1
        if len(self.examples[reason]) < _EXAMPLES_PER_REASON:
            self.examples[reason].append(os.fspath(path))
        log.warning("%s: skipped %s (%s)%s", self.dataset, os.fspath(path), reason,
                    f": {detail}" if detail else "")

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
