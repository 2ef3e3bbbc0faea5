"""The finding vocabulary and CheXpert label values shared by builders, pipelines and evals."""

from __future__ import annotations

import numpy as np

# CheXpert's observation names in snake_case, in the order of every label vector we write.
FINDINGS: tuple[str, ...] = (
    "no_finding",
    "cardiomegaly",
    "pleural_effusion",
    "pneumothorax",
    "consolidation",
    "lung_lesion",
    "support_devices",
)

# The 14 CheXpert / CheXbert observations in snake_case, in CheXpert's CSV column order. Real
# chest X-ray builders (MIMIC-CXR, CheXpert, CheXpert Plus, Open-i) and the report labeler use
# this vocabulary; FINDINGS above is the subset the synthetic data set renders.
CHEXPERT_FINDINGS: tuple[str, ...] = (
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_opacity",
    "lung_lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
)

# CheXpert value convention, stored as int8 in prepared records.
POSITIVE = 1
NEGATIVE = 0
UNCERTAIN = -1
NOT_MENTIONED = -2

LABEL_VALUE_NAMES = {
    POSITIVE: "positive",
    NEGATIVE: "negative",
    UNCERTAIN: "uncertain",
    NOT_MENTIONED: "not_mentioned",
}


def binary_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map CheXpert values to evaluation targets.

    Returns (targets, valid): positive -> 1, negative / not mentioned -> 0, and uncertain
    entries marked invalid so AUROC is computed on the cases a reader committed to.
    """
    labels = np.asarray(labels)
    targets = (labels == POSITIVE).astype(np.int32)
    valid = labels != UNCERTAIN
    return targets, valid


# The phrases zero-shot prompts use for each finding (several are ensembled); synthetic reports
# use them among their wordings. no_finding is the exception: its phrase names what a normal
# study's report denies ("no acute cardiopulmonary abnormality"), see radfm_jax/evals/zeroshot.py.
FINDING_PHRASES: dict[str, tuple[str, ...]] = {
    "no_finding": ("acute cardiopulmonary abnormality",),
    "cardiomegaly": ("cardiomegaly",),
    "pleural_effusion": ("pleural effusion",),
    "pneumothorax": ("pneumothorax",),
    "consolidation": ("consolidation",),
    "lung_lesion": ("lung nodule",),
    "support_devices": ("support devices",),
    "enlarged_cardiomediastinum": ("enlarged cardiomediastinum",),
    "edema": ("pulmonary edema",),
    "pleural_other": ("pleural thickening",),
}
NO_FINDING = "no_finding"


def finding_phrases(name: str) -> tuple[str, ...]:
    """Prompt phrases of a label: the table above, else its name in words ("lung_opacity" ->
    "lung opacity"), so data sets with their own vocabularies (NIH, CT-RATE) work unchanged."""
    return FINDING_PHRASES.get(name, (name.replace("_", " ").lower(),))
