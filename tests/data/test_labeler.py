"""The rule-based CheXpert labeler: hand-labelled sentences (values written by hand from the
CheXpert convention) and a cross-check against the synthetic report generator, which decides
each study's labels first and writes the text from them."""

from __future__ import annotations

import numpy as np
import pytest

from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import plan_splits, sample_patients, sample_studies
from radfm_jax.data.findings import (
    CHEXPERT_FINDINGS, FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN,
)
from radfm_jax.data.labeler import label_report, label_vector

P, N, U = POSITIVE, NEGATIVE, UNCERTAIN
NF = "no_finding"

# (report, {observation: value}); every observation not listed must be NOT_MENTIONED, and
# no_finding is listed whenever it is POSITIVE.
CASES = [
    # Plain statements and synonyms.
    ("Cardiomegaly.", {"cardiomegaly": P}),
    ("The heart is mildly enlarged.", {"cardiomegaly": P}),
    ("Moderately enlarged cardiac silhouette.", {"cardiomegaly": P}),
    ("Small left pleural effusion.", {"pleural_effusion": P}),
    ("Blunting of the right costophrenic angle.", {"pleural_effusion": P}),
    ("Small right apical pneumothorax.", {"pneumothorax": P}),
    ("Mild pulmonary edema.", {"edema": P}),
    ("Acute fracture of the left sixth rib.", {"fracture": P}),
    ("Left apical pleural thickening.", {"pleural_other": P}),
    ("The mediastinum is widened.", {"enlarged_cardiomediastinum": P}),
    ("Patchy airspace disease in the left lower lobe.", {"lung_opacity": P}),
    ("Right upper lobe mass.", {"lung_lesion": P}),
    ("Left lower lobe collapse.", {"atelectasis": P}),
    # Normal-study phrases and size statements.
    ("Heart size is normal.", {"cardiomegaly": N, NF: P}),
    ("The cardiac silhouette is normal in size.", {"cardiomegaly": N, NF: P}),
    ("The heart is not enlarged.", {"cardiomegaly": N, NF: P}),
    ("Heart size and mediastinal contours are within normal limits.",
     {"cardiomegaly": N, "enlarged_cardiomediastinum": N, NF: P}),
    ("Normal cardiomediastinal silhouette.", {"enlarged_cardiomediastinum": N, NF: P}),
    ("The costophrenic angles are sharp.", {"pleural_effusion": N, NF: P}),
    ("The lungs are clear.", {"lung_opacity": N, "consolidation": N, "pneumonia": N, "edema": N, NF: P}),
    ("No acute cardiopulmonary process.", {NF: P}),
    ("Normal chest radiograph.", {NF: P}),
    # Nothing reported: nothing is normal either.
    ("", {}),
    # Negation: before, after, lists, scope.
    ("No pleural effusion.", {"pleural_effusion": N, NF: P}),
    ("No effusion, pneumothorax or consolidation.",
     {"pleural_effusion": N, "pneumothorax": N, "consolidation": N, NF: P}),
    ("No focal consolidation, pleural effusion, or pneumothorax is seen.",
     {"consolidation": N, "pleural_effusion": N, "pneumothorax": N, NF: P}),
    ("There is no evidence of pneumothorax.", {"pneumothorax": N, NF: P}),
    ("Negative for pneumothorax.", {"pneumothorax": N, NF: P}),
    ("The lungs are free of consolidation.", {"consolidation": N, NF: P}),
    ("Pneumothorax is not seen.", {"pneumothorax": N, NF: P}),
    ("Pleural effusion and pneumothorax are not identified.",
     {"pleural_effusion": N, "pneumothorax": N, NF: P}),
    ("Focal consolidation, pleural effusion or pneumothorax are not identified.",
     {"consolidation": N, "pleural_effusion": N, "pneumothorax": N, NF: P}),
    ("Left chest tube in place, right chest tube removed.", {"support_devices": P, NF: P}),
    ("Small left effusion and the small pneumothorax has resolved.",
     {"pleural_effusion": P, "pneumothorax": N}),
    ("The previously seen left effusion has resolved.", {"pleural_effusion": N, NF: P}),
    ("Right lower lobe consolidation without pleural effusion.", {"consolidation": P, "pleural_effusion": N}),
    ("No pneumothorax, but there is a small left pleural effusion.",
     {"pneumothorax": N, "pleural_effusion": P}),
    ("No displaced fracture.", {"fracture": N, NF: P}),
    ("No change in the moderate right pleural effusion.", {"pleural_effusion": P}),
    # Uncertainty.
    ("Possible right lower lobe pneumonia.", {"pneumonia": U}),
    ("Cannot exclude pneumonia.", {"pneumonia": U}),
    ("Pneumonia cannot be excluded.", {"pneumonia": U}),
    ("Findings are suggestive of pulmonary edema.", {"edema": U}),
    ("Likely left lower lobe atelectasis.", {"atelectasis": U}),
    ("Atelectasis versus pneumonia in the left base.", {"atelectasis": U, "pneumonia": U}),
    ("Bibasilar atelectasis and/or effusion.", {"atelectasis": U, "pleural_effusion": U}),
    ("Questionable small right apical pneumothorax.", {"pneumothorax": U}),
    ("Pneumothorax?", {"pneumothorax": U}),
    ("Borderline cardiomegaly.", {"cardiomegaly": U}),
    # "Top normal" / "upper limits of normal" is normal, as in CheXpert's negation patterns.
    ("Heart size is top normal.", {"cardiomegaly": N, NF: P}),
    ("The cardiomediastinal silhouette is stable.", {"enlarged_cardiomediastinum": U}),
    ("No new consolidation.", {"consolidation": U}),
    ("Pulmonary vascular congestion.", {"edema": U}),
    ("No pulmonary vascular congestion.", {"edema": N, NF: P}),
    ("Pneumonia is suspected.", {"pneumonia": U}),
    ("Small effusion may be present.", {"pleural_effusion": U}),
    ("Right basilar opacity may represent atelectasis.", {"lung_opacity": P, "atelectasis": U}),
    ("Left basilar opacity most likely reflects atelectasis.", {"lung_opacity": P, "atelectasis": U}),
    ("Opacity in the right lower lobe, likely pneumonia.", {"lung_opacity": P, "pneumonia": U}),
    ("8 mm nodule in the left upper lobe, suspicious for malignancy.", {"lung_lesion": P}),
    # Several mentions: positive > uncertain > negative.
    ("Possible small left effusion. Small left pleural effusion is present.", {"pleural_effusion": P}),
    ("Possible right basilar atelectasis. No atelectasis on the left.", {"atelectasis": U}),
    ("No pleural effusion on the right. Small left pleural effusion.", {"pleural_effusion": P}),
    # CheXpert's heart-failure rule.
    ("Findings consistent with congestive heart failure.", {"edema": P, "cardiomegaly": U}),
    # no_finding: support devices do not count, other abnormalities do.
    ("Endotracheal tube terminates 4 cm above the carina.", {"support_devices": P, NF: P}),
    ("Right internal jugular central venous catheter tip in the SVC. No pneumothorax.",
     {"support_devices": P, "pneumothorax": N, NF: P}),
    ("The endotracheal tube has been removed.", {"support_devices": N, NF: P}),
    ("Median sternotomy wires. Left chest wall pacemaker.", {"support_devices": P, NF: P}),
    ("Small calcified granuloma in the right upper lobe.", {}),
    ("Emphysema. No acute process.", {}),
    # Only the findings and impression of a sectioned report are read.
    ("INDICATION: Evaluate for pneumonia.\nFINDINGS: The lungs are clear.\n"
     "IMPRESSION: No acute cardiopulmonary process.",
     {"lung_opacity": N, "consolidation": N, "pneumonia": N, "edema": N, NF: P}),
]


@pytest.mark.parametrize("report, expected", CASES, ids=[c[0][:50] or "empty" for c in CASES])
def test_hand_labelled_sentences(report, expected):
    want = {name: expected.get(name, NOT_MENTIONED) for name in CHEXPERT_FINDINGS}
    assert label_report(report) == want


def test_label_vector_is_int8_in_chexpert_order():
    report = "Small left pleural effusion. No pneumothorax. Possible pneumonia."
    vec = label_vector(report)
    assert vec.dtype == np.int8 and vec.shape == (14,)
    labels = label_report(report)
    assert vec.tolist() == [labels[name] for name in CHEXPERT_FINDINGS]
    assert vec[CHEXPERT_FINDINGS.index("pleural_effusion")] == POSITIVE
    assert vec[CHEXPERT_FINDINGS.index("pneumothorax")] == NEGATIVE
    assert vec[CHEXPERT_FINDINGS.index("pneumonia")] == UNCERTAIN


def _synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n synthetic (report, label) pairs drawn as the synthetic_cxr builder chains them."""
    plan = plan_splits({"train": n, "val": 0, "test": 0}, seed)["train"]
    patients = sample_patients(int(plan.patient.max()) + 1, seed)
    studies = sample_studies(plan, patients, np.random.default_rng([seed, 0, 0, 0]), seed)
    return write_reports(studies, np.random.default_rng([seed, 0, 0, 2]))


def test_agrees_with_the_synthetic_report_generator():
    reports, labels = _synthetic(512, seed=11)
    shared = [CHEXPERT_FINDINGS.index(f) for f in FINDINGS]
    predicted = np.stack([label_vector(r) for r in reports])[:, shared]
    expected = labels.copy()
    # The generator's no_finding is NEGATIVE / UNCERTAIN when a finding (support devices
    # included) is stated / hedged. CheXpert's rule, which the labeler follows, ignores devices
    # and leaves no_finding NOT_MENTIONED otherwise; map the generator's labels to that rule.
    pathologies = [FINDINGS.index(f) for f in FINDINGS if f not in ("no_finding", "support_devices")]
    stated = np.isin(labels[:, pathologies], [POSITIVE, UNCERTAIN]).any(axis=1)
    expected[:, FINDINGS.index("no_finding")] = np.where(stated, NOT_MENTIONED, POSITIVE)
    agreement = {f: float((predicted[:, j] == expected[:, j]).mean()) for j, f in enumerate(FINDINGS)}
    print("labeler vs generator agreement:", agreement)
    # Every value occurs, so agreement is not won by predicting one value everywhere.
    for j, f in enumerate(FINDINGS[1:], start=1):
        assert set(np.unique(expected[:, j])) == {POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED}, f
    assert all(a >= 0.97 for a in agreement.values()), agreement
