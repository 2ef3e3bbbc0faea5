"""Patient-level splits: a seeded split for data sets without an official one, and the refusal
of splits that share a patient."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Mapping

from radfm_jax.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def seeded_split(patient: str, seed: int, fractions: Mapping[str, float]) -> str:
    """A patient's split for data sets without an official one.

    A hash of (seed, patient) picks the split, so a patient's split never depends on which
    other patients exist: adding patients leaves everyone else where they were. Pass the raw,
    data-set-scoped patient id (not the salted key) so every machine draws the same split.
    """
    total = sum(fractions.values())
    if not fractions or abs(total - 1.0) > 1e-9 or min(fractions.values()) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    digest = hashlib.sha256(f"radfm-split:{seed}:{patient}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for split, fraction in fractions.items():
        cumulative += fraction
        if u < cumulative:
            return split
    return split  # u within rounding of 1.0


def check_disjoint_patients(patients_by_split: Mapping[str, Iterable[str]], dataset: str) -> None:
    """Refuse splits that share a patient: a ConfigError with the count and example keys."""
    owner: dict[str, str] = {}
    shared: dict[str, set[str]] = collections.defaultdict(set)
    for split, patients in patients_by_split.items():
        for patient in set(patients):
            if patient in owner and owner[patient] != split:
                shared[patient].update((owner[patient], split))
            owner.setdefault(patient, split)
    if shared:
        examples = ", ".join(f"{key} ({'/'.join(sorted(splits))})"
                             for key, splits in sorted(shared.items())[:3])
        raise ConfigError(
            f"{dataset}: {len(shared)} patient(s) appear in more than one split, e.g. {examples}; "
            "refusing to write a data set whose evaluation splits leak training patients. "
            "Check the split files in the manual folder.")
