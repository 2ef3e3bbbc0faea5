"""Parsing the label and demographic cells of CheXpert-style tables, shared by the builders."""

from __future__ import annotations

import numpy as np

from radfm_jax.data.findings import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

SEX_CODES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def chexpert_value(cell: str) -> int:
    """A CheXpert-labeler CSV cell (1.0 / 0.0 / -1.0 / blank) as a label value; ValueError
    on anything else."""
    cell = cell.strip()
    if cell == "":
        return NOT_MENTIONED
    value = float(cell)
    if value not in (POSITIVE, NEGATIVE, UNCERTAIN):
        raise ValueError(f"label cell {cell!r} is not 1, 0, -1 or blank")
    return int(value)


def apply_uncertain_policy(labels: np.ndarray, policy: str) -> np.ndarray:
    """U-ignore keeps uncertain (-1); U-ones maps it to positive, U-zeros to negative."""
    mapped = {"ignore": UNCERTAIN, "ones": POSITIVE, "zeros": NEGATIVE}
    if policy not in mapped:
        raise ValueError(f"uncertain_policy must be one of {sorted(mapped)}, got {policy!r}")
    labels = np.asarray(labels, dtype=np.int8).copy()
    labels[labels == UNCERTAIN] = mapped[policy]
    return labels


def parse_age(cell: str, max_age: int = 120, min_age: int = 0) -> int:
    """Age in years, -1 when blank or outside [min_age, max_age]; ValueError when not a number."""
    cell = cell.strip()
    if not cell:
        return -1
    age = int(float(cell))
    return age if min_age <= age <= max_age else -1


def parse_sex(cell: str) -> str:
    """'M' / 'F', or '' when unknown."""
    return SEX_CODES.get(cell.strip().lower(), "")
