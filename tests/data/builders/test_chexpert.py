"""chexpert and chexpert_plus on fake copies in the published layout."""

from __future__ import annotations

import numpy as np
import pytest
from fake_data import (
    build,
    chexpert_row,
    make_chexpert,
    make_chexpert_test,
    records,
    source,
    text,
    write_corrupt,
    write_csv,
    write_image,
)

from radfm_jax.data.builders.chexpert import Chexpert
from radfm_jax.data.builders.chexpert_plus import ChexpertPlus
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.errors import ConfigError

J = {f: j for j, f in enumerate(CHEXPERT_FINDINGS)}


def expected(**values) -> np.ndarray:
    vector = np.full(14, -2, np.int8)  # not mentioned
    for finding, value in values.items():
        vector[J[finding]] = value
    return vector


def _patient_number(record, manual_dir) -> int:
    return int(source(record, manual_dir).split("/")[1].removeprefix("patient"))


@pytest.mark.parametrize("policy, edema", [("ignore", -1), ("ones", 1), ("zeros", 0)])
def test_labels_splits_and_uncertain_policy(chexpert_dir, tmp_path, policy, edema):
    recs = records(build(Chexpert, chexpert_dir, tmp_path / "data", uncertain_policy=policy))
    # 30 train patients with one frontal image each (laterals filtered), 4 valid patients.
    assert len(recs["train"]) + len(recs["val"]) == 30 and len(recs["test"]) == 4
    assert len(recs["val"]) >= 1
    for record in recs["train"] + recs["val"]:
        p = _patient_number(record, chexpert_dir)
        want = (expected(cardiomegaly=1, edema=edema, pleural_effusion=0) if p % 2
                else expected(no_finding=1))
        np.testing.assert_array_equal(record["labels"], want)
        assert text(record["view"]) == ("AP" if p % 3 else "PA")
        assert text(record["report"]) == "" and text(record["sex"]) == "F" and record["age"] == 63
    assert all(source(r, chexpert_dir).startswith("valid/") for r in recs["test"])
    np.testing.assert_array_equal(recs["test"][0]["labels"], expected(atelectasis=1, edema=0))
    patients = {s: {text(r["patient_id"]) for r in rs} for s, rs in recs.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    for record in (r for rs in recs.values() for r in rs):
        for key in ("patient_id", "study_id"):
            assert "patient" not in text(record[key]) and len(text(record[key])) == 16


def test_all_views_and_official_small_prefix(tmp_path):
    manual = tmp_path / "CheXpert-v1.0"
    make_chexpert(manual, prefix="CheXpert-v1.0", n_train_patients=10, n_valid_patients=2)
    recs = records(build(Chexpert, manual, tmp_path / "data", views=(), val_fraction=0.3))
    views = [text(r["view"]) for rs in recs.values() for r in rs]
    assert views.count("LATERAL") == 10 and len(views) == 22


def test_corrupt_image_and_bad_row_are_counted_and_skipped(chexpert_dir, tmp_path):
    write_corrupt(chexpert_dir / "train/patient00003/study1/view1_frontal.jpg")
    with open(chexpert_dir / "train.csv", "a") as handle:
        handle.write("not/a/chexpert/path.jpg,Male,50,Frontal,PA" + ",," * 7 + "\n")
    builder = build(Chexpert, chexpert_dir, tmp_path / "data")
    recs = records(builder)
    assert len(recs["train"]) + len(recs["val"]) == 29
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"unreadable_image": 1, "unparseable_row": 1}
    assert summary["skipped_examples"]["unreadable_image"] == ["train/patient00003/study1/view1_frontal.jpg"]
    assert summary["filtered"] == {"view_LATERAL": 30}
    assert builder.info.metadata["split_convention"] == "valid_as_test"  # no test set in the copy


def test_split_with_only_bad_images_is_an_error(chexpert_dir, tmp_path):
    for p in range(31, 35):
        write_corrupt(chexpert_dir / f"valid/patient{p:05d}/study1/view1_frontal.jpg")
    with pytest.raises(ConfigError, match="split 'test' was skipped"):
        build(Chexpert, chexpert_dir, tmp_path / "data")
    assert not list((tmp_path / "data").glob("chexpert/*/1.0.0"))  # nothing left half-written


def test_patient_in_train_and_valid_is_refused(chexpert_dir, tmp_path):
    with open(chexpert_dir / "valid.csv", "a", newline="") as handle:
        row = chexpert_row("CheXpert-v1.0-small", "valid", 5, 2, 1)  # patient 5 is a train patient
        handle.write(",".join(row) + "\n")
    write_image(chexpert_dir / "valid/patient00005/study2/view1_frontal.jpg", 999, "JPEG")
    with pytest.raises(ConfigError, match=r"1 patient\(s\) appear in more than one split"):
        build(Chexpert, chexpert_dir, tmp_path / "data")


@pytest.mark.parametrize("where", [".", "CheXpert"])
def test_official_test_set_becomes_test_and_valid_becomes_val(chexpert_dir, tmp_path, where):
    # The test set beside train.csv, or CheXlocalize's CheXpert/ folder dropped into the copy.
    rows = make_chexpert_test(chexpert_dir / where)
    builder = build(Chexpert, chexpert_dir, tmp_path / "data")
    recs = records(builder)
    assert builder.info.metadata["split_convention"] == "official_test"
    # train.csv is all train (30 frontal images), valid.csv is val, the test table is test.
    assert len(recs["train"]) == 30 and len(recs["val"]) == 4
    assert all(source(r, chexpert_dir).startswith("valid/") for r in recs["val"])
    prefix = "" if where == "." else "CheXpert/"
    assert sorted(source(r, chexpert_dir) for r in recs["test"]) == sorted(
        prefix + row[0] for row in rows if row[0].endswith("frontal.jpg"))  # the lateral is filtered
    for record in recs["test"]:
        assert text(record["source_path"]).startswith(prefix + "test/")  # the layout folders stay
        p = int(source(record, chexpert_dir).split("/")[-3].removeprefix("patient"))
        want = expected(cardiomegaly=1, pleural_effusion=0) if p % 2 else expected(no_finding=1)
        want[want == -2] = 0  # the test table writes every label as 0 or 1
        np.testing.assert_array_equal(record["labels"], want)
        assert text(record["view"]) == "FRONTAL" and text(record["sex"]) == "" and record["age"] == -1
    assert builder.info.metadata["build_summary"]["filtered"] == {"view_LATERAL": 31}
    # The convention is stored with the data set, so a later reader sees it too.
    again = Chexpert(config=builder.builder_config, data_dir=str(tmp_path / "data"))
    assert again.info.metadata["split_convention"] == "official_test"


PLUS_HEADER = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
               "patient_report_date_order", "report", "section_findings", "section_impression",
               "age", "sex", "split"]


def test_chexpert_plus_joins_reports_with_chexpert(tmp_path):
    manual = tmp_path / "chexpert_plus"
    written = make_chexpert(manual / "CheXpert-v1.0-small", n_train_patients=12, n_valid_patients=3)
    rows = []
    for row in written["train"] + written["valid"]:
        relative = row[0].split("/", 1)[1]
        patient = relative.split("/")[1]
        rows.append([relative, relative.replace(".jpg", ".dcm"), row[3], row[4], patient, 1,
                     "", f"Heart size for {patient} is normal.", "No acute process.", 60, "Female",
                     relative.split("/")[0]])
    rows[0][7] = rows[0][8] = ""  # no sections and no report: skipped as empty
    rows.append(["train/patient99999/study1/view1_frontal.jpg", "", "Frontal", "PA", "x", 1,
                 "FINDINGS: clear.", "clear.", "", 1, "Male", "train"])
    write_csv(manual / "df_chexpert_plus_240401.csv", PLUS_HEADER, rows)
    builder = build(ChexpertPlus, manual, tmp_path / "data", text_target="both")
    recs = records(builder)
    assert sum(len(v) for v in recs.values()) == 11 + 3  # 12 frontal train images, one empty
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"empty_report": 1, "not_in_chexpert_tables": 1}
    record = recs["test"][0]
    number = source(record, manual).split("/")[2]
    assert text(record["report"]) == (f"FINDINGS: Heart size for {number} is normal.\n"
                                      "IMPRESSION: No acute process.")
    assert text(record["source_path"]).startswith("CheXpert-v1.0-small/valid/")
    assert number not in text(record["source_path"])
    # The same patient gets the same key as in chexpert built into the same data folder.
    plain = records(build(Chexpert, manual / "CheXpert-v1.0-small", tmp_path / "data"))
    by_path = {source(r, manual / "CheXpert-v1.0-small"): text(r["patient_id"])
               for rs in plain.values() for r in rs}
    path = source(record, manual).split("/", 1)[1]
    assert by_path[path] == text(record["patient_id"])
    impressions = records(build(ChexpertPlus, manual, tmp_path / "data", text_target="impression"))
    assert {text(r["report"]) for rs in impressions.values() for r in rs} == {"No acute process."}


@pytest.mark.parametrize(("cell", "age"), [("0", -1), ("45", 45), ("", -1), ("130", -1)])
def test_an_age_of_zero_is_missing_like_other_impossible_ages(cell, age):
    from radfm_jax.data.builders.chexpert.builder import COL_AGE, COLUMNS, parse_row

    row = dict.fromkeys(COLUMNS, "")
    row.update({"Path": "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg",
                "Frontal/Lateral": "Frontal", "AP/PA": "PA", "Sex": "Female", COL_AGE: cell})
    assert parse_row(row).age == age
