"""nih_cxr14 on a fake ChestX-ray14 copy, and the data check on a build with an injected
duplicate image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fake_data import build, expert_values, make_nih, make_nih_expert, records, source, text

from radfm_jax.data.builders.nih_cxr14 import EXPERT_FINDINGS, NIH_FINDINGS, NihCxr14, NihCxr14Expert
from radfm_jax.data.check import check_dataset
from radfm_jax.errors import ConfigError


def _patient(record, manual_dir) -> int:
    return int(source(record, manual_dir).split("/")[-1][:8])


def test_labels_official_test_list_and_seeded_val(nih_dir, tmp_path):
    recs = records(build(NihCxr14, nih_dir, tmp_path / "data", val_fraction=0.25))
    assert {s: len(r) for s, r in recs.items()}["test"] == 8  # patients 21-24, two images each
    assert {_patient(r, nih_dir) for r in recs["test"]} == {21, 22, 23, 24}
    assert len(recs["train"]) + len(recs["val"]) == 40 and recs["val"]
    by_name = {n: j for j, n in enumerate(NIH_FINDINGS)}
    for record in (r for rs in recs.values() for r in rs):
        p = _patient(record, nih_dir)
        names = [["no_finding"], ["cardiomegaly", "pleural_effusion"], ["hernia"],
                 ["infiltration", "mass", "nodule"]][p % 4]
        want = np.zeros(15, np.int8)
        want[[by_name[n] for n in names]] = 1
        np.testing.assert_array_equal(record["labels"], want)
        assert record["age"] == 40 + p and text(record["sex"]) == ("M" if p % 2 else "F")
        assert f"{p:08d}" not in text(record["patient_id"]) + text(record["study_id"])
        assert len(text(record["patient_id"])) == 16
    patients = {s: {text(r["patient_id"]) for r in rs} for s, rs in recs.items()}
    assert not (patients["train"] & patients["val"])


def test_patient_in_both_official_lists_is_refused(nih_dir, tmp_path):
    with open(nih_dir / "test_list.txt", "a") as handle:
        handle.write("00000001_001.png\n")  # patient 1's other image is in train_val_list
    lines = (nih_dir / "train_val_list.txt").read_text().split()
    (nih_dir / "train_val_list.txt").write_text("\n".join(l for l in lines if l != "00000001_001.png"))
    with pytest.raises(ConfigError, match=r"1 patient\(s\) appear in more than one split"):
        build(NihCxr14, nih_dir, tmp_path / "data")


def test_empty_official_list_is_an_error(nih_dir, tmp_path):
    (nih_dir / "test_list.txt").write_text("")
    with pytest.raises(ConfigError, match=r"\['test'\] would be empty"):
        build(NihCxr14, nih_dir, tmp_path / "data")


def test_missing_image_is_counted(nih_dir, tmp_path):
    (nih_dir / "images_001/images/00000001_000.png").unlink()
    builder = build(NihCxr14, nih_dir, tmp_path / "data")
    assert builder.info.metadata["build_summary"]["skipped"] == {"missing_file": 1}


def test_check_finds_an_injected_duplicate_across_splits(tmp_path):
    manual = tmp_path / "nih"
    make_nih(manual)
    # Patient 24 (test) gets a copy of patient 1's first image (train/val).
    shutil.copy(manual / "images_001/images/00000001_000.png", manual / "images_002/images/00000024_000.png")
    builder = build(NihCxr14, manual, tmp_path / "data")
    result = check_dataset(builder)
    assert result["patient_overlap"]["count"] == 0
    split_of_patient_1 = "train" if any(
        _patient(r, manual) == 1 for r in records(builder)["train"]) else "val"
    assert result["duplicates"]["across"][f"{split_of_patient_1}/test"] == 1
    assert sum(result["duplicates"]["across"].values()) == 1
    assert sum(result["duplicates"]["within"].values()) == 0


@pytest.mark.parametrize("layout, nodule_column", [("nih", "Nodule or mass"), ("gcs", "Nodule/mass")])
def test_expert_labels_test_split_and_train_val_from_the_validation_table(tmp_path, layout, nodule_column):
    manual = tmp_path / "nih"
    tables = make_nih_expert(manual, layout=layout, nodule_column=nodule_column)
    prefix = "four_findings_expert_labels_" if layout == "nih" else "four_findings_expert_labels/"
    with open(manual / f"{prefix}validation_labels.csv", "a") as handle:
        handle.write("00000013_000.png,No Finding,0,13,53,M,PA,30,40,0.1,0.1,,NO,NO,NO\n")  # not adjudicated
        handle.write("00000014_000.png,No Finding,0,14,54,F,PA,30,40,0.1,0.1,MAYBE,NO,NO,NO\n")
    builder = build(NihCxr14Expert, manual, tmp_path / "data", val_fraction=0.3)
    recs = records(builder)
    assert EXPERT_FINDINGS == ("fracture", "pneumothorax", "airspace_opacity", "lung_lesion")
    assert list(builder.info.metadata["label_names"]) == list(EXPERT_FINDINGS)
    assert {_patient(r, manual) for r in recs["test"]} == {21, 22, 23, 24} and len(recs["test"]) == 8
    assert len(recs["train"]) + len(recs["val"]) == len(tables["validation"]) == 24 and recs["val"]
    assert {_patient(r, manual) for r in recs["train"] + recs["val"]} == set(range(1, 13))
    for record in (r for rs in recs.values() for r in rs):
        p, follow_up = _patient(record, manual), int(source(record, manual)[-7:-4])
        want = [1 if v == "YES" else 0 for v in expert_values(p, follow_up)]
        np.testing.assert_array_equal(record["labels"], want)
        assert record["age"] == 40 + p and text(record["view"]) == ("PA" if follow_up == 0 else "AP")
    patients = {s: {text(r["patient_id"]) for r in rs} for s, rs in recs.items()}
    assert not (patients["train"] & patients["val"])
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"unparseable_row": 1} and summary["filtered"] == {"not_adjudicated": 1}
    # The patient keys are nih_cxr14's: the same patient, the same pseudonym in one data folder.
    plain = records(build(NihCxr14, manual, tmp_path / "data"))
    keys = {_patient(r, manual): text(r["patient_id"]) for rs in plain.values() for r in rs}
    assert all(keys[_patient(r, manual)] == text(r["patient_id"]) for r in recs["test"])


def test_expert_tables_missing_is_a_clear_error(nih_dir, tmp_path):
    with pytest.raises(ConfigError, match="four_findings_expert_labels_test_labels.csv") as err:
        build(NihCxr14Expert, nih_dir, tmp_path / "data")
    assert "Airspace opacity" in str(err.value)  # the layout is shown
