"""Report sections, normalisation and report targets on hand-written MIMIC-CXR, Open-i and
CheXpert Plus style reports (expected values written by hand), and on synthetic reports."""

from __future__ import annotations

import numpy as np
import pytest

from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import plan_splits, sample_patients, sample_studies
from radfm_jax.data.report_sections import (
    SECTION_NAMES,
    normalize_report,
    parse_sections,
    report_target,
)
from radfm_jax.errors import ConfigError

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 1. No acute cardiopulmonary process.
 2. Stable ___ nodule
"""

OPEN_I = ("COMPARISON: None. INDICATION: XXXX-year-old male with chest pain. FINDINGS: The heart is "
          "normal in size. XXXX XXXX are clear. IMPRESSION: No acute disease.")

CHEXPERT_PLUS = """NARRATIVE:
CHEST, SINGLE VIEW

CLINICAL HISTORY: 65 years of age, Female, shortness of breath.

COMPARISON: 3/1/2019.

PROCEDURE COMMENTS: Single portable view of the chest.

FINDINGS:
Support lines and tubes are unchanged.

IMPRESSION:
1. Stable bibasilar atelectasis.
2. No pneumothorax.

END OF IMPRESSION:

SUMMARY:
3-ABNORMAL

ACCESSION NUMBER:
12345
"""


def _collapsed(sections: dict[str, str]) -> dict[str, str]:
    return {k: " ".join(v.split()) for k, v in sections.items()}


def test_section_names_contract():
    assert SECTION_NAMES == ("findings", "impression", "indication", "comparison", "technique", "history")


def test_mimic_report_sections():
    assert _collapsed(parse_sections(MIMIC)) == {
        "technique": "CHEST (PA AND LAT) Chest PA and lateral",
        "indication": "___F with new onset ascites // eval for infection",
        "comparison": "None.",
        "findings": "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral "
                    "nodular opacities that most likely represent nipple shadows.",
        "impression": "1. No acute cardiopulmonary process. 2. Stable ___ nodule",
    }


def test_mimic_wet_read_goes_to_preamble():
    text = "WET READ: ___ 4:12 PM\n  No pneumothorax.\n\n FINAL REPORT\n IMPRESSION: Small left effusion.\n"
    assert _collapsed(parse_sections(text)) == {
        "preamble": "___ 4:12 PM No pneumothorax.",
        "impression": "Small left effusion.",
    }


def test_open_i_one_line_report_sections():
    assert parse_sections(OPEN_I) == {
        "comparison": "None.",
        "indication": "XXXX-year-old male with chest pain.",
        "findings": "The heart is normal in size. XXXX XXXX are clear.",
        "impression": "No acute disease.",
    }


def test_chexpert_plus_report_sections():
    assert _collapsed(parse_sections(CHEXPERT_PLUS)) == {
        "preamble": "CHEST, SINGLE VIEW 3-ABNORMAL 12345",
        "history": "65 years of age, Female, shortness of breath.",
        "comparison": "3/1/2019.",
        "technique": "Single portable view of the chest.",
        "findings": "Support lines and tubes are unchanged.",
        "impression": "1. Stable bibasilar atelectasis. 2. No pneumothorax.",
    }


@pytest.mark.parametrize("text, expected", [
    ("Findings :\nHeart size normal.\nimpression -  no acute disease",
     {"findings": "Heart size normal.", "impression": "no acute disease"}),
    ("IMPRESSION\nNo acute disease.", {"impression": "No acute disease."}),
    ("  findings:   Clear lungs.  \n\nConclusion: Normal.",
     {"findings": "Clear lungs.", "impression": "Normal."}),
    ("Indication/History: cough\nFINDINGS: Clear.", {"indication": "cough", "findings": "Clear."}),
    ("REASON FOR EXAM: fever\nClinical Information : r/o pna\nCLINICAL HISTORY: smoker",
     {"indication": "fever\nr/o pna", "history": "smoker"}),
    ("FINDINGS AND IMPRESSION: No acute process.",
     {"findings": "No acute process.", "impression": "No acute process."}),
    ("FINDINGS/IMPRESSION: Clear lungs.\nIMPRESSION: Normal study.",
     {"findings": "Clear lungs.", "impression": "Normal study."}),
    ("Portable chest.\nFINDINGS: Clear.", {"preamble": "Portable chest.", "findings": "Clear."}),
    ("The lungs are clear. No effusion.", {"preamble": "The lungs are clear. No effusion."}),
    # A sentence that starts with a header word is not a header.
    ("FINDINGS: Comparison is made to the prior study. History of smoking noted.",
     {"findings": "Comparison is made to the prior study. History of smoking noted."}),
    ("IMPRESSION:\n\nCOMPARISON: None.", {"comparison": "None."}),
    ("", {}),
])
def test_messy_headers(text, expected):
    assert parse_sections(text) == expected


@pytest.mark.parametrize("text, expected", [
    # One paragraph with capitalised headers after each sentence's end.
    ("Indication: Cough. Comparison: None. Findings: The heart is normal. Impression: Normal chest.",
     {"indication": "Cough.", "comparison": "None.", "findings": "The heart is normal.",
      "impression": "Normal chest."}),
    ("Reason for exam: fever? Findings: Clear lungs; Impression: No pneumonia.",
     {"indication": "fever?", "findings": "Clear lungs;", "impression": "No pneumonia."}),
    ("Clinical History: smoker. Findings And Impression: Normal.",
     {"history": "smoker.", "findings": "Normal.", "impression": "Normal."}),
    # A capitalised header word not after a sentence's end, or without a colon, is text.
    ("FINDINGS: Chest Comparison: prior study. Heart normal. History of smoking noted.",
     {"findings": "Chest Comparison: prior study. Heart normal. History of smoking noted."}),
    ("FINDINGS: Heart normal. Findings are stable.", {"findings": "Heart normal. Findings are stable."}),
])
def test_inline_capitalised_headers(text, expected):
    assert parse_sections(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1. No effusion\n2. No pneumothorax", "No effusion. No pneumothorax"),
    ("The lungs are\nclear.  No   effusion .", "The lungs are clear. No effusion."),
    ("XXXX XXXX are normal. ____ year old. [**Hospital 18**] chest.",
     "___ ___ are normal. ___ year old. ___ chest."),
    ("1. Nodule measures 1.5 cm. 2. No effusion.", "Nodule measures 1.5 cm. No effusion."),
    ("- Small effusion\n- Atelectasis", "Small effusion. Atelectasis"),
    ("Heart normal\n\nLungs clear", "Heart normal. Lungs clear"),
    ("(1) Right rib fracture; (2) no pneumothorax", "Right rib fracture; no pneumothorax"),
    ("  \n ", ""),
])
def test_normalize_report(text, expected):
    assert normalize_report(text) == expected


def test_report_targets_of_a_mimic_report():
    findings = ("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
                "opacities that most likely represent nipple shadows.")
    impression = "No acute cardiopulmonary process. Stable ___ nodule"
    assert report_target(MIMIC, "findings") == findings
    assert report_target(MIMIC, "impression") == impression
    assert report_target(MIMIC, "both") == f"FINDINGS: {findings}\nIMPRESSION: {impression}"


def test_report_target_fallbacks():
    only_impression = "INDICATION: cough\nIMPRESSION: No acute disease."
    assert report_target(only_impression, "findings") == ""
    assert report_target(only_impression, "both") == "IMPRESSION: No acute disease."
    only_findings = "FINDINGS: Clear lungs."
    assert report_target(only_findings, "impression") == "Clear lungs."
    assert report_target(only_findings, "both") == "FINDINGS: Clear lungs."
    free_text = "The lungs are\nclear."
    assert report_target(free_text, "findings") == "The lungs are clear."
    assert report_target(free_text, "impression") == "The lungs are clear."
    assert report_target("FINDINGS AND IMPRESSION: Normal.", "both") == "FINDINGS: Normal."


@pytest.mark.parametrize("text", ["", "   ", "IMPRESSION: ___", "FINDINGS: XXXX.\nIMPRESSION:",
                                  "INDICATION: cough"])
def test_report_target_empty_when_nothing_usable(text):
    for target in ("findings", "impression", "both"):
        assert report_target(text, target) == ""


def test_unknown_target_names_the_valid_ones():
    with pytest.raises(ConfigError, match="'summary'.*findings, impression, both"):
        report_target("FINDINGS: Clear.", "summary")
    assert issubclass(ConfigError, ValueError)


def test_synthetic_reports_round_trip():
    """Synthetic reports are written as "FINDINGS: ...\\nIMPRESSION: ..."; split them by hand."""
    plan = plan_splits({"train": 200, "val": 0, "test": 0}, seed=5)["train"]
    studies = sample_studies(plan, sample_patients(int(plan.patient.max()) + 1, 5),
                             np.random.default_rng([5, 0]), 5)
    reports, _ = write_reports(studies, np.random.default_rng([5, 1]))
    for report in reports:
        head, impression = report.split("\nIMPRESSION: ")
        assert report_target(report, "findings") == head.removeprefix("FINDINGS: ")
        assert report_target(report, "impression") == impression
        assert report_target(report, "both") == report
