"""mimic_cxr on a fake MIMIC-CXR-JPG + reports copy in the published layout."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from fake_data import MIMIC_SUBJECTS, build, make_mimic, records, source, text, write_corrupt

from radfm_jax.data.builders.mimic_cxr import MimicCxr
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.errors import ConfigError

J = {f: j for j, f in enumerate(CHEXPERT_FINDINGS)}
REPORT_BOTH = ("FINDINGS: The heart is mildly enlarged. There is a small left pleural effusion.\n"
               "IMPRESSION: Cardiomegaly and small left effusion.")


def expected(**values) -> np.ndarray:
    vector = np.full(14, -2, np.int8)
    for finding, value in values.items():
        vector[J[finding]] = value
    return vector


def _subject_index(record, manual_dir) -> int:
    subject = int(source(record, manual_dir).split("/")[2].removeprefix("p"))
    return MIMIC_SUBJECTS.index(subject)


def test_official_split_labels_text_and_pseudonyms(mimic_dir, tmp_path):
    recs = records(build(MimicCxr, mimic_dir, tmp_path / "data"))
    assert {s: len(r) for s, r in recs.items()} == {"train": 8, "val": 2, "test": 2}
    want_split = lambda i: "train" if i < 8 else "val" if i < 10 else "test"  # noqa: E731
    for split, rs in recs.items():
        for record in rs:
            assert want_split(_subject_index(record, mimic_dir)) == split
            assert text(record["view"]) == "PA"
            assert text(record["report"]) == REPORT_BOTH
            np.testing.assert_array_equal(
                record["labels"], expected(cardiomegaly=1, pleural_effusion=-1, edema=0))
            assert text(record["sex"]) == "" and record["age"] == -1
            # No raw subject, study or dicom id anywhere, source_path included.
            fields = [text(record[k]) for k in ("patient_id", "study_id", "report", "view", "source_path")]
            subject = str(MIMIC_SUBJECTS[_subject_index(record, mimic_dir)])
            assert not any(subject in f or "5000000" in f for f in fields)
            assert text(record["source_path"]).startswith("files/")


def test_negbio_labels_uncertain_ones_and_impression(mimic_dir, tmp_path):
    recs = records(build(MimicCxr, mimic_dir, tmp_path / "data", labeler="negbio",
                         uncertain_policy="ones", text_target="impression", views=()))
    assert {s: len(r) for s, r in recs.items()} == {"train": 16, "val": 4, "test": 4}
    record = recs["train"][0]
    np.testing.assert_array_equal(record["labels"], expected(cardiomegaly=1, pleural_effusion=1))
    assert text(record["report"]) == "Cardiomegaly and small left effusion."
    chexpert_ones = records(build(MimicCxr, mimic_dir, tmp_path / "data", uncertain_policy="ones"))
    np.testing.assert_array_equal(chexpert_ones["test"][0]["labels"],
                                  expected(cardiomegaly=1, pleural_effusion=1, edema=0))


def test_reports_from_the_zip_match_the_extracted_folder(mimic_dir, tmp_path):
    zipped = tmp_path / "zipped"
    make_mimic(zipped, reports="zip")
    from_zip = records(build(MimicCxr, zipped, tmp_path / "a"))
    from_folder = records(build(MimicCxr, mimic_dir, tmp_path / "b"))
    for split in from_zip:
        assert ([text(r["report"]) for r in from_zip[split]]
                == [text(r["report"]) for r in from_folder[split]])


def test_bad_records_are_counted_and_skipped(mimic_dir, tmp_path):
    s1, s2, s3 = MIMIC_SUBJECTS[1], MIMIC_SUBJECTS[2], MIMIC_SUBJECTS[3]
    (mimic_dir / f"files/p10/p{s1}/s50000001.txt").write_text("FINAL REPORT\nFINDINGS:\n\nIMPRESSION:\n___\n")
    (mimic_dir / f"files/p10/p{s2}/s50000002.txt").unlink()
    write_corrupt(mimic_dir / f"files/p10/p{s3}/s50000003/d03f-{s3}.jpg")
    builder = build(MimicCxr, mimic_dir, tmp_path / "data")
    assert len(records(builder)["train"]) == 5
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"empty_report": 1, "missing_report": 1, "unreadable_image": 1}
    assert summary["skipped_examples"]["unreadable_image"] == [f"files/p10/p{s3}/s50000003/d03f-{s3}.jpg"]


def test_all_bad_test_split_is_an_error(mimic_dir, tmp_path):
    for subject, study in ((MIMIC_SUBJECTS[10], 50000010), (MIMIC_SUBJECTS[11], 50000011)):
        (mimic_dir / f"files/p10/p{subject}/s{study}.txt").write_text("IMPRESSION:\n\n")
    with pytest.raises(ConfigError, match=r"\['test'\] would be empty"):
        build(MimicCxr, mimic_dir, tmp_path / "data")


def test_a_patient_in_two_official_splits_is_refused(mimic_dir, tmp_path):
    path = mimic_dir / "mimic-cxr-2.0.0-split.csv.gz"
    lines = gzip.open(path, "rt").read().splitlines()
    lines[2] = lines[2].replace(",train", ",test")  # subject 0's lateral image moves to test
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"1 patient\(s\) appear in more than one split"):
        build(MimicCxr, mimic_dir, tmp_path / "data", views=())


def test_missing_tables_and_reports_are_named(mimic_dir, tmp_path):
    (mimic_dir / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    (mimic_dir / "mimic-cxr-2.0.0-negbio.csv.gz").unlink()
    with pytest.raises(ConfigError) as err:
        build(MimicCxr, mimic_dir, tmp_path / "data", labeler="negbio")
    assert "mimic-cxr-2.0.0-metadata.csv.gz" in str(err.value)
    assert "mimic-cxr-2.0.0-negbio.csv.gz" in str(err.value)
    assert "mimic-cxr-2.0.0-split.csv.gz" not in str(err.value).split("Expected layout")[0]
    bare = tmp_path / "bare"
    make_mimic(bare)
    for report in bare.glob("files/p*/p*/s*.txt"):
        report.unlink()
    with pytest.raises(ConfigError, match="no reports"):
        build(MimicCxr, bare, tmp_path / "data")
