"""The finding vocabulary and CheXpert label values shared by builders, pipelines and evals."""

from __future__ import annotations

import dataclasses

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


# Zero-shot prompt phrases. A finding is *present* in the words radiologists use when they
# report it, with the laterality, size and location they state ("small left pleural effusion",
# "right upper lung nodule", "endotracheal tube in place"); the prompt embedding averages them
# all, so it sits among the report sentences that assert the finding rather than on a bare noun
# no report writes. *Absent* is the plain negated noun ("no pleural effusion"), as reports deny.
# On the demo checkpoint the positive ensembles raise mean zero-shot AUROC from 0.886 (bare
# nouns) to 0.92; a linear probe on the same image embeddings reaches 0.94. no_finding is the
# exception: its phrase names what a normal study's report denies ("no acute cardiopulmonary
# abnormality"), see radfm_jax/evals/zeroshot.py.
_SIDES = ("left", "right")
_SIZES = ("small", "moderate", "large")
_LUNG_ZONES = ("upper", "middle", "lower")


@dataclasses.dataclass(frozen=True)
class FindingPhrases:
    """Phrases put into a zero-shot prompt's templates: `present` into the positive templates,
    `absent` into the negative ones ("no {finding}.")."""

    present: tuple[str, ...]
    absent: tuple[str, ...]


def _sided(noun: str, sizes: tuple[str, ...] = _SIZES) -> tuple[str, ...]:
    return tuple(f"{size} {side} {noun}" for size in sizes for side in _SIDES)


FINDING_PHRASES: dict[str, FindingPhrases] = {
    "no_finding": FindingPhrases(("acute cardiopulmonary abnormality",), ("acute cardiopulmonary abnormality",)),
    "cardiomegaly": FindingPhrases(
        ("mild cardiomegaly", "moderate cardiomegaly", "severe cardiomegaly", "enlarged cardiac silhouette"),
        ("cardiomegaly",)),
    "pleural_effusion": FindingPhrases(
        _sided("pleural effusion") + ("bilateral pleural effusions",), ("pleural effusion", "effusion")),
    "pneumothorax": FindingPhrases(_sided("pneumothorax"), ("pneumothorax",)),
    "consolidation": FindingPhrases(
        tuple(f"{side} {zone} lung consolidation" for zone in _LUNG_ZONES for side in _SIDES),
        ("consolidation", "focal consolidation")),
    "lung_lesion": FindingPhrases(
        tuple(f"{size}{side} {zone} lung nodule" for size in ("small ", "") for side in _SIDES
              for zone in ("upper", "lower")) + tuple(f"{side} lung mass" for side in _SIDES),
        ("lung nodule", "lung nodule or mass")),
    "support_devices": FindingPhrases(
        ("support devices in place", "endotracheal tube in place", "right central venous catheter in place",
         "nasogastric tube in the stomach", "pacemaker with a single lead in place"),
        ("support devices", "lines or tubes")),
    "enlarged_cardiomediastinum": FindingPhrases(
        ("enlarged cardiomediastinal silhouette", "widened mediastinum"), ("enlarged cardiomediastinum",)),
    "lung_opacity": FindingPhrases(
        tuple(f"{side} {zone} lung opacity" for zone in ("upper", "lower") for side in _SIDES),
        ("lung opacity", "focal opacity")),
    "edema": FindingPhrases(("mild pulmonary edema", "moderate pulmonary edema", "severe pulmonary edema"),
                            ("pulmonary edema",)),
    "atelectasis": FindingPhrases(("left basilar atelectasis", "right basilar atelectasis",
                                   "bibasilar atelectasis", "subsegmental atelectasis"), ("atelectasis",)),
    "pneumonia": FindingPhrases(tuple(f"{side} lower lobe pneumonia" for side in _SIDES) + ("pneumonia",),
                                ("pneumonia",)),
    "pleural_other": FindingPhrases(tuple(f"{side} pleural thickening" for side in _SIDES),
                                    ("pleural thickening",)),
    "fracture": FindingPhrases(tuple(f"{side} rib fracture" for side in _SIDES), ("fracture",)),
}
NO_FINDING = "no_finding"

# The same for chest CT, over CT-RATE's 18 abnormalities (ct_rate.tables.LABEL_NAMES): CT reports
# name a finding by lobe, node station or subtype, not by radiograph zone or silhouette, and deny
# it with a noun phrase ("no pericardial fluid", "no enlarged lymph node"). A CT report never
# says "enlarged cardiac silhouette", so the radiograph table's positive side would pull the
# prompt away from the reports that state the finding.
_LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
CT_FINDING_PHRASES: dict[str, FindingPhrases] = {
    "medical_material": FindingPhrases(
        ("central venous catheter in place", "cardiac pacemaker in place", "sternotomy wires",
         "nasogastric tube in place"), ("medical material", "catheter or device")),
    "arterial_wall_calcification": FindingPhrases(
        ("arterial wall calcification", "calcified atherosclerotic plaques in the aorta",
         "atherosclerotic calcification of the aortic wall"),
        ("arterial wall calcification", "atherosclerotic calcification")),
    "cardiomegaly": FindingPhrases(
        ("cardiomegaly", "mild cardiomegaly", "moderate cardiomegaly", "enlarged heart"),
        ("cardiomegaly", "enlargement of the heart")),
    "pericardial_effusion": FindingPhrases(
        ("pericardial effusion", "small pericardial effusion", "pericardial fluid"),
        ("pericardial effusion", "pericardial fluid")),
    "coronary_artery_wall_calcification": FindingPhrases(
        ("coronary artery wall calcification", "calcified plaques in the coronary arteries"),
        ("coronary artery calcification",)),
    "hiatal_hernia": FindingPhrases(("hiatal hernia", "small hiatal hernia"), ("hiatal hernia",)),
    "lymphadenopathy": FindingPhrases(
        ("mediastinal lymphadenopathy", "enlarged mediastinal lymph nodes", "enlarged hilar lymph nodes",
         "enlarged subcarinal lymph node", "lymph nodes of pathological size"),
        ("mediastinal or hilar lymphadenopathy", "enlarged lymph node", "lymph node of pathological size")),
    "emphysema": FindingPhrases(
        ("emphysema", "centrilobular emphysema", "paraseptal emphysema", "emphysematous changes in both lungs"),
        ("emphysema", "emphysematous change")),
    "atelectasis": FindingPhrases(
        ("atelectasis", "subsegmental atelectasis in the lower lobes", "linear atelectasis"), ("atelectasis",)),
    "lung_nodule": FindingPhrases(
        ("pulmonary nodule", "multiple pulmonary nodules", "lung mass")
        + tuple(f"nodule in the {lobe}" for lobe in _LOBES),
        ("pulmonary nodule", "nodule or mass in either lung")),
    "lung_opacity": FindingPhrases(("ground-glass opacity", "patchy opacities in the lungs"),
                                   ("lung opacity", "ground-glass opacity")),
    "pulmonary_fibrotic_sequela": FindingPhrases(
        ("fibrotic sequelae in the lungs", "fibrotic bands", "parenchymal fibrotic changes"),
        ("fibrotic sequela",)),
    "pleural_effusion": FindingPhrases(
        _sided("pleural effusion") + ("bilateral pleural effusions",), ("pleural effusion", "pleural fluid")),
    "mosaic_attenuation_pattern": FindingPhrases(
        ("mosaic attenuation pattern", "mosaic attenuation in both lungs"), ("mosaic attenuation",)),
    "peribronchial_thickening": FindingPhrases(("peribronchial thickening", "bronchial wall thickening"),
                                               ("peribronchial thickening",)),
    "consolidation": FindingPhrases(("consolidation",) + tuple(f"consolidation in the {lobe}" for lobe in _LOBES),
                                    ("consolidation", "focal consolidation")),
    "bronchiectasis": FindingPhrases(("bronchiectasis", "cylindrical bronchiectasis in the lower lobes"),
                                     ("bronchiectasis",)),
    "interlobular_septal_thickening": FindingPhrases(
        ("interlobular septal thickening", "thickening of the interlobular septa"),
        ("interlobular septal thickening",)),
}


def finding_phrases(name: str, table: dict[str, FindingPhrases] = FINDING_PHRASES) -> FindingPhrases:
    """Prompt phrases of a label: `table` (FINDING_PHRASES for radiographs, CT_FINDING_PHRASES
    for chest CT), else its name in words ("lung_opacity" -> "lung opacity") on both sides, so
    data sets with their own vocabularies (NIH) work unchanged."""
    if name in table:
        return table[name]
    words = (name.replace("_", " ").lower(),)
    return FindingPhrases(words, words)
