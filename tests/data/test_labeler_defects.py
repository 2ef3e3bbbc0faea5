"""The report labeler on hand-written sentences, one group per defect class found when it was
first measured on real expert-annotated reports: inline section headers, reports without
findings, "noncalcified" nodules, negation scope, history and hypothetical text, and missing
vocabulary. Expected values are written by hand from the CheXpert convention."""

from __future__ import annotations

import pytest

from radfm_jax.data.findings import CHEXPERT_FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN
from radfm_jax.data.labeler import label_report

P, N, U = POSITIVE, NEGATIVE, UNCERTAIN
NF = "no_finding"
CLEAR_LUNGS = {"lung_opacity": N, "consolidation": N, "pneumonia": N, "edema": N}


def _check(report: str, expected: dict[str, int]) -> None:
    """Every observation not in `expected` must be NOT_MENTIONED."""
    want = {name: expected.get(name, NOT_MENTIONED) for name in CHEXPERT_FINDINGS}
    assert label_report(report) == want


# Headers written inline, in Title case, inside one paragraph: only findings and impression
# are read, so the indication's "rule out" and "history of" say nothing.
INLINE_HEADERS = [
    ("Indication: Rule out pneumothorax, history of effusion. Findings: Heart size is normal. "
     "Impression: No acute disease.", {"cardiomegaly": N, NF: P}),
    ("Clinical history: Cough and fever. Comparison: None. Findings: Small left pleural effusion. "
     "Impression: Left effusion.", {"pleural_effusion": P}),
    ("Reason for exam: pneumonia? Findings: The lungs are clear. Impression: Normal chest.",
     {**CLEAR_LUNGS, NF: P}),
]

# Nothing to label: no_finding is NOT_MENTIONED, like every other observation.
NO_BODY = ["", "   ", "INDICATION: Chest pain.\nCOMPARISON: None.", "FINDINGS: XXXX.\nIMPRESSION: XXXX",
           "Indication: Shortness of breath. Comparison: Chest radiograph XXXX."]

UNCALCIFIED = [
    ("Noncalcified nodule in the right upper lobe.", {"lung_lesion": P}),
    ("8 mm uncalcified nodule in the left lower lobe.", {"lung_lesion": P}),
    ("A non-calcified pulmonary nodule is again seen.", {"lung_lesion": P}),
    ("No airspace disease, effusion or noncalcified nodule.",
     {"lung_opacity": N, "pleural_effusion": N, "lung_lesion": N, NF: P}),
]

NEGATION_SCOPE = [
    # A list longer than ten words after "no".
    ("No focal airspace consolidation, suspicious pulmonary opacity, large pleural effusion, "
     "or pneumothorax is identified.",
     {"consolidation": N, "lung_opacity": N, "pleural_effusion": N, "pneumothorax": N, NF: P}),
    ("No convincing radiographic evidence of an acute focal process in either lung to suggest "
     "pneumonia.", {"pneumonia": N, NF: P}),
    # A comma that does not continue a list ends the negation.
    ("No pneumothorax, mild cardiomegaly.", {"pneumothorax": N, "cardiomegaly": P}),
    ("No pleural effusion, small right apical pneumothorax.", {"pleural_effusion": N, "pneumothorax": P}),
    # "otherwise" and "other than" end it too.
    ("No new consolidation, otherwise unchanged small left pleural effusion.",
     {"consolidation": U, "pleural_effusion": P}),
    ("No acute abnormality other than a small left pleural effusion.", {"pleural_effusion": P}),
    # Conjunctions (already right before the fix).
    ("No pneumothorax, but small left pleural effusion.", {"pneumothorax": N, "pleural_effusion": P}),
    ("No focal consolidation; however, there is mild cardiomegaly.", {"consolidation": N, "cardiomegaly": P}),
    # "No change in X or Y" states both X and Y; the "or" continues the list, it is no hedge.
    ("No change in the small left pleural effusion or the right apical pneumothorax.",
     {"pleural_effusion": P, "pneumothorax": P}),
    ("No significant interval change in moderate cardiomegaly or small bilateral effusions.",
     {"cardiomegaly": P, "pleural_effusion": P}),
]

HISTORY_AND_HYPOTHETICAL = [
    ("History of pneumonia. The lungs are clear.", {**CLEAR_LUNGS, NF: P}),
    ("Evaluate for pneumothorax. No acute cardiopulmonary process.", {NF: P}),
    ("Chest radiograph to rule out pneumonia; the lungs are clear.", {**CLEAR_LUNGS, NF: P}),
    ("Known history of congestive heart failure, no edema.", {"edema": N, NF: P}),
    ("Recommend CT to evaluate for malignancy.", {NF: P}),
    ("History of lung cancer; new right upper lobe mass.", {"lung_lesion": P}),
    # A hedge that contains "rule out" stays a hedge.
    ("Pneumonia cannot be ruled out.", {"pneumonia": U}),
]

VOCABULARY = [
    ("Right lower lobe pneumonitis.", {"pneumonia": P}),
    ("No pleural air collections.", {"pneumothorax": N, NF: P}),
    ("Pacing leads terminate in the right ventricle.", {"support_devices": P, NF: P}),
    ("Portacatheter tip at the cavoatrial junction.", {"support_devices": P, NF: P}),
    ("Right chest port with tip in the SVC.", {"support_devices": P, NF: P}),
    ("A 2.5 cm masslike opacity in the right upper lobe.", {"lung_lesion": P, "lung_opacity": P}),
    ("Spiculated right upper lobe lung cancer.", {"lung_lesion": P}),
    ("Appearance is suspicious for malignancy.", {"lung_lesion": U}),
    # A bone lesion is not a lung lesion, but it is an abnormality.
    ("Expansile lytic lesion of the right sixth rib.", {}),
    # CheXpert's negation patterns read "upper limits of normal" as normal; "borderline" stays
    # uncertain.
    ("Heart size is at the upper limits of normal.", {"cardiomegaly": N, NF: P}),
    ("Borderline heart size.", {"cardiomegaly": U}),
    # Abnormalities outside the 14 observations rule out no_finding.
    ("Low lung volumes with bronchovascular crowding.", {}),
    ("Tortuous thoracic aorta.", {}),
    ("Thoracic spondylosis.", {}),
    ("Left axillary surgical clips.", {}),
    ("Sequelae of prior granulomatous disease.", {}),
]


def _ids(cases):
    return [c[0][:60] for c in cases]


@pytest.mark.parametrize("report, expected", INLINE_HEADERS, ids=_ids(INLINE_HEADERS))
def test_inline_title_case_headers(report, expected):
    _check(report, expected)


@pytest.mark.parametrize("report", NO_BODY)
def test_no_findings_or_impression_is_not_mentioned(report):
    _check(report, {})


@pytest.mark.parametrize("report, expected", UNCALCIFIED, ids=_ids(UNCALCIFIED))
def test_uncalcified_nodule_is_a_lung_lesion(report, expected):
    _check(report, expected)


@pytest.mark.parametrize("report, expected", NEGATION_SCOPE, ids=_ids(NEGATION_SCOPE))
def test_negation_scope(report, expected):
    _check(report, expected)


@pytest.mark.parametrize("report, expected", HISTORY_AND_HYPOTHETICAL, ids=_ids(HISTORY_AND_HYPOTHETICAL))
def test_history_and_hypothetical_text(report, expected):
    _check(report, expected)


@pytest.mark.parametrize("report, expected", VOCABULARY, ids=_ids(VOCABULARY))
def test_vocabulary(report, expected):
    _check(report, expected)
