"""rsna_pneumonia and siim_acr_pneumothorax on fake copies in their published layouts, with
small valid DICOM files written here by pydicom (8- and 16-bit MONOCHROME2, uncompressed and
JPEG baseline) and truncated / missing ones that must be counted, logged and skipped; and
`radfm data check` on each fine-tuning benchmark added with them."""

from __future__ import annotations

import numpy as np
import pytest
from fake_data import (
    IMAGE_SIZE,
    build,
    make_nih_expert,
    make_rsna,
    make_siim,
    records,
    rsna_patient,
    source,
    text,
    truncate,
    write_csv,
    write_dicom,
)

from radfm_jax import cli
from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders import registry
from radfm_jax.data.builders.dicom_radiograph import parse_dicom_age
from radfm_jax.data.builders.rsna_pneumonia import RsnaPneumonia
from radfm_jax.data.builders.siim_acr_pneumothorax import SiimAcrPneumothorax
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.errors import ConfigError

SPEC = PreprocessSpec(kind="image2d", size=(IMAGE_SIZE, IMAGE_SIZE))


def _all(recs):
    return [r for rs in recs.values() for r in rs]


def test_dicom_ages():
    assert [parse_dicom_age(a) for a in ("051Y", "51", "006M", "003W", "", "148", "abc", None)] == \
        [51, 51, 0, 0, -1, -1, -1, -1]


def test_rsna_labels_header_fields_and_seeded_split(tmp_path, caplog):
    manual = tmp_path / "rsna-pneumonia-detection-challenge"
    truth = make_rsna(manual)
    bad = {rsna_patient(i) for i in (3, 5, 7, 8)}
    truncate(manual / "stage_2_train_images" / f"{rsna_patient(3)}.dcm")  # pixel data cut short
    (manual / "stage_2_train_images" / f"{rsna_patient(5)}.dcm").unlink()
    with open(manual / "stage_2_detailed_class_info.csv", "a") as handle:
        handle.write(f"{rsna_patient(7)},Lung Opacity\n")  # Target 0 but Lung Opacity: a conflict
    with open(manual / "stage_2_train_labels.csv", "a") as handle:
        handle.write(f"{rsna_patient(8)},,,,,maybe\n")
    builder = build(RsnaPneumonia, manual, tmp_path / "data")
    recs = records(builder)
    assert len(_all(recs)) == 36 and all(recs.values())
    for record in _all(recs):
        key = source(record, manual).removeprefix("stage_2_train_images/").removesuffix(".dcm")
        assert key not in text(record["source_path"])
        target, name, view, sex, age, pixels = truth[key]
        assert key not in bad
        np.testing.assert_array_equal(record["labels"], [target])
        assert text(record["detailed_class"]) == name
        assert (text(record["view"]), text(record["sex"]), int(record["age"])) == (view, sex, age)
        assert text(record["report"]) == ""
        assert key not in text(record["patient_id"]) and len(text(record["patient_id"])) == 16
        # The image is the stored pixels (no window in the header: min-max) at the spec's size.
        want = SPEC.apply_image(pixels.astype(np.float32) / 255).astype(int)
        got = record["image"].astype(int)
        if int(key[-12:], 16) % 4 == 0:  # uncompressed: exact up to rounding
            assert np.abs(got - want).max() <= 1, key
        else:  # JPEG baseline, as Kaggle's files are: lossy, but the same picture
            assert np.abs(got - want).mean() < 6 and np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"unreadable_image": 1, "missing_file": 1, "label_conflict": 1,
                                  "unparseable_row": 1}
    assert summary["skipped_examples"]["unreadable_image"] == [f"stage_2_train_images/{rsna_patient(3)}.dcm"]
    assert f"stage_2_train_images/{rsna_patient(3)}.dcm" in caplog.text  # logged with its path
    assert list(builder.info.metadata["label_names"]) == ["pneumonia"]
    assert builder.info.metadata["split_convention"] == (
        "seeded_patient_split by patientId: train 0.7 / val 0.15 / test 0.15, seed 0 (no official test labels)")
    # The same split seed puts each patientId in the same split; another seed moves some.
    again = records(build(RsnaPneumonia, manual, tmp_path / "again", split_seed=0))
    other = records(build(RsnaPneumonia, manual, tmp_path / "other", split_seed=1))

    def split_of(rs):
        return {text(r["source_path"]): s for s, rr in rs.items() for r in rr}
    assert split_of(again) == split_of(recs) != split_of(other)


def test_rsna_missing_tables_name_the_layout(tmp_path):
    manual = tmp_path / "rsna"
    manual.mkdir()
    (manual / "readme.txt").write_text("not the data")
    with pytest.raises(ConfigError, match="stage_2_train_labels.csv") as err:
        build(RsnaPneumonia, manual, tmp_path / "data")
    assert "stage_2_train_images/<patientId>.dcm" in str(err.value)


def test_siim_any_mask_is_positive_and_patients_stay_together(tmp_path, caplog):
    manual = tmp_path / "siim"
    truth = make_siim(manual)
    ids = list(truth)
    files = {p.stem: p for p in (manual / "dicom-images-train").rglob("*.dcm")}
    truncate(files[ids[2]], keep=200)  # cut inside the header
    truncate(files[ids[4]])  # cut inside the pixel data
    files[ids[6]].unlink()
    with open(manual / "train-rle.csv", "a") as handle:
        handle.write(f"{ids[8]}, 12 oops\n")  # not a run-length encoding
    write_dicom(manual / "dicom-images-train" / "s" / "r" / "unlabelled.dcm", 7, patient_id="zz")
    builder = build(SiimAcrPneumothorax, manual, tmp_path / "data")
    recs = records(builder)
    assert len(_all(recs)) == len(ids) - 4 and all(recs.values())
    split_of_patient = {}
    for split, rs in recs.items():
        for record in rs:
            image_id = source(record, manual).split("/")[-1][:-4]
            patient, positive, view, sex, age = truth[image_id]
            np.testing.assert_array_equal(record["labels"], [positive])
            assert (text(record["view"]), text(record["sex"]), int(record["age"])) == (view, sex, age)
            assert text(record["source_path"]).startswith("dicom-images-train/")
            assert split_of_patient.setdefault(patient, split) == split
            assert patient not in text(record["patient_id"])
    assert sum(positive for _, positive, *_ in truth.values()) > 3
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"unreadable_image": 2, "missing_file": 1, "unparseable_row": 1}
    assert summary["filtered"] == {"not_in_label_table": 1}
    assert summary["skipped_examples"]["missing_file"] == [f"{ids[6]}.dcm"]
    assert any(ids[2] in path for path in summary["skipped_examples"]["unreadable_image"])
    assert ids[4] in caplog.text
    # The patient records of a two-image patient share one pseudonym.
    pseudonyms = {}
    for record in _all(recs):
        patient = truth[source(record, manual).split("/")[-1][:-4]][0]
        pseudonyms.setdefault(patient, set()).add(text(record["patient_id"]))
    assert all(len(keys) == 1 for keys in pseudonyms.values())


def test_siim_without_images_is_a_clear_error(tmp_path):
    manual = tmp_path / "siim"
    write_csv(manual / "train-rle.csv", ["ImageId", " EncodedPixels"], [["1.2.3", " -1"]])
    with pytest.raises(ConfigError, match="no image folder") as err:
        build(SiimAcrPneumothorax, manual, tmp_path / "data")
    assert "dicom-images-train/<StudyInstanceUID>" in str(err.value)


@pytest.mark.parametrize("name, make, label", [("rsna_pneumonia", make_rsna, "pneumonia"),
                                               ("siim_acr_pneumothorax", make_siim, "pneumothorax"),
                                               ("nih_cxr14_expert", make_nih_expert, "airspace_opacity")])
def test_data_check_builds_and_checks(tmp_path, capsys, name, make, label):
    manual = tmp_path / name
    make(manual)
    assert cli.main(["data", "check", name, "--set", f"data.manual_dir={manual}",
                     "--set", f"data.data_dir={tmp_path / 'data'}", "--set", f"data.image_size={IMAGE_SIZE}"]) == 0
    out = capsys.readouterr().out
    assert "patients in more than one split: 0" in out and label in out
    assert registry.declared_label_names(name) == registry.BUILDERS[name].LABEL_NAMES


def test_subgroup_shift_reaches_synthetic_cxr_only(tmp_path):
    builder = registry.prepare_dataset(DataConfig(num_train=20, num_val=5, num_test=5, image_size=32,
                                                  subgroup_shift="sex"), tmp_path)
    assert builder.builder_config.name == "n20-v5-t5-s32-seed0-shift-sex"
    with pytest.raises(ConfigError, match="synthetic_cxr option"):
        registry.prepare_dataset(DataConfig(name="rsna_pneumonia", subgroup_shift="sex"), tmp_path)
