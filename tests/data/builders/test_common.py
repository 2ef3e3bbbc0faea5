"""Shared builder machinery: seeded splits, leakage refusal, salts, skip accounting, label
parsing, manual-folder errors, and the registry's helpers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fake_data import IMAGE_SIZE, build, make_chexpert

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders import patient_splits, pseudonyms, registry, skips, table_fields
from radfm_jax.data.builders.chexpert import Chexpert, ChexpertConfig
from radfm_jax.data.findings import FINDINGS
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.errors import ConfigError

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_seeded_split_is_stable_when_patients_are_added():
    first = {f"p{i}": patient_splits.seeded_split(f"p{i}", 0, FRACTIONS) for i in range(300)}
    more = {f"p{i}": patient_splits.seeded_split(f"p{i}", 0, FRACTIONS) for i in range(600)}
    assert all(more[p] == split for p, split in first.items())
    other_seed = {p: patient_splits.seeded_split(p, 1, FRACTIONS) for p in first}
    assert other_seed != first


def test_seeded_split_follows_the_fractions():
    n = 4000
    splits = [patient_splits.seeded_split(f"patient{i}", 7, FRACTIONS) for i in range(n)]
    for split, fraction in FRACTIONS.items():
        share = splits.count(split) / n
        # 5 binomial standard deviations
        assert abs(share - fraction) < 5 * np.sqrt(fraction * (1 - fraction) / n), split
    with pytest.raises(ValueError, match="sum to 1"):
        patient_splits.seeded_split("p", 0, {"train": 0.5, "val": 0.4})


def test_shared_patients_are_refused_with_count_and_examples():
    patient_splits.check_disjoint_patients({"train": ["a", "b", "b"], "val": ["c"], "test": ["d"]}, "x")
    with pytest.raises(ConfigError, match=r"x: 2 patient\(s\) appear in more than one split") as err:
        patient_splits.check_disjoint_patients({"train": ["a", "b"], "val": ["b"], "test": ["a", "e"]}, "x")
    assert "a (test/train)" in str(err.value) and "b (train/val)" in str(err.value)


def test_pseudonyms_are_keyed_by_kind(tmp_path):
    # Where the key lives and how it is checked: test_pseudonym_key.py.
    ids = pseudonyms.Pseudonymizer(pseudonyms.load_or_create_key(tmp_path / "data"))
    assert ids("patient", "123") == ids("patient", "123") != ids("study", "123")
    assert "123" not in ids("patient", "123")


def test_chexpert_cells_and_uncertain_policies():
    # CheXpert's convention: 1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned.
    cells = ["1.0", "0.0", "-1.0", "", " 1 "]
    values = [table_fields.chexpert_value(c) for c in cells]
    assert values == [1, 0, -1, -2, 1]
    with pytest.raises(ValueError):
        table_fields.chexpert_value("2.0")
    labels = np.array(values, np.int8)
    np.testing.assert_array_equal(table_fields.apply_uncertain_policy(labels, "ignore"), [1, 0, -1, -2, 1])
    np.testing.assert_array_equal(table_fields.apply_uncertain_policy(labels, "ones"), [1, 0, 1, -2, 1])
    np.testing.assert_array_equal(table_fields.apply_uncertain_policy(labels, "zeros"), [1, 0, 0, -2, 1])


def test_skip_log_counts_reasons_and_keeps_example_paths(caplog, tmp_path):
    caplog.set_level(logging.WARNING)
    log = skips.SkipLog("demo")
    for i in range(7):
        log.skip(skips.UNREADABLE_IMAGE, f"img{i}.jpg", "truncated\tfile")
    log.skip(skips.EMPTY_REPORT, "r.txt")
    log.filter("view_LATERAL")
    log.wrote("train")
    summary = log.summary()
    assert summary["skipped"] == {"unreadable_image": 7, "empty_report": 1}
    assert summary["skipped_examples"]["unreadable_image"] == [f"img{i}.jpg" for i in range(5)]
    assert summary["filtered"] == {"view_LATERAL": 1} and summary["written"] == {"train": 1}
    assert not caplog.records  # no warning per record
    # report: one warning per reason (count, first paths) and every record in the file.
    path = log.report(tmp_path / "build")
    assert path == tmp_path / "build" / skips.SKIPPED_RECORDS_FILE
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    assert "7" in caplog.records[0].getMessage() and "img1.jpg" in caplog.records[0].getMessage()
    assert path.read_text().splitlines()[1:] == [
        *(f"unreadable_image\timg{i}.jpg\ttruncated file" for i in range(7)), "empty_report\tr.txt\t"]
    assert skips.SkipLog("clean").report(tmp_path / "clean") is None
    assert not (tmp_path / "clean").exists()


def test_missing_manual_folder_and_files_name_what_is_missing(tmp_path):
    cfg = DataConfig(name="chexpert", image_size=IMAGE_SIZE, data_dir=str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="data.manual_dir") as err:
        registry.prepare_dataset(cfg, tmp_path / "data")
    assert "valid.csv" in str(err.value)  # the layout is shown
    cfg = DataConfig(name="chexpert", image_size=IMAGE_SIZE, manual_dir=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        registry.prepare_dataset(cfg, tmp_path / "data")
    manual = tmp_path / "manual"
    make_chexpert(manual)
    (manual / "valid.csv").unlink()
    with pytest.raises(ConfigError, match=r"missing in manual folder .*: valid\.csv"):
        build(Chexpert, manual, tmp_path / "data")


def test_registry_builds_records_spec_and_label_names(tmp_path):
    manual = tmp_path / "manual"
    make_chexpert(manual)
    cfg = DataConfig(name="chexpert", image_size=IMAGE_SIZE, manual_dir=str(manual),
                     uncertain_policy="ones")
    builder = registry.prepare_dataset(cfg, tmp_path / "data")
    spec = PreprocessSpec(kind="image2d", size=(IMAGE_SIZE, IMAGE_SIZE))
    assert registry.recorded_spec(builder) == spec.to_metadata()
    assert registry.label_names(builder)[:3] == ("no_finding", "enlarged_cardiomediastinum", "cardiomegaly")
    assert registry.build_summary(builder)["written"]["test"] == 4
    assert spec.fingerprint() in builder.builder_config.name
    # Built once: a second prepare needs no manual folder and reads the same build.
    again = registry.prepare_dataset(DataConfig(name="chexpert", image_size=IMAGE_SIZE,
                                                uncertain_policy="ones"), tmp_path / "data")
    assert again.data_dir == builder.data_dir
    # Another spec builds into another folder.
    crop = ChexpertConfig(spec=PreprocessSpec(kind="image2d", size=(IMAGE_SIZE,) * 2, resize="crop"))
    assert crop.name != builder.builder_config.name
    with pytest.raises(ConfigError, match="data.windows"):
        registry.prepare_dataset(DataConfig(name="chexpert", windows=("lung",)), tmp_path / "data")


def test_registry_on_synthetic_cxr(tmp_path):
    builder = registry.prepare_dataset(
        DataConfig(num_train=20, num_val=5, num_test=5, image_size=32), tmp_path)
    assert registry.label_names(builder) == FINDINGS
    assert registry.recorded_spec(builder) is None
    # data.name is checked against the registry: every registered data set is accepted, and
    # another name is refused with the nearest registered one and the list.
    from radfm_jax.config.loading import validate
    from radfm_jax.config.overrides import apply_overrides
    from radfm_jax.config.schema import ExperimentConfig

    for name in registry.BUILDERS:
        validate(apply_overrides(ExperimentConfig(), [f"data.name={name}"]))
    with pytest.raises(ConfigError, match="no builder for data set 'mimic' \\(did you mean 'mimic_cxr'\\?\\); known: synthetic_cxr"):
        validate(apply_overrides(ExperimentConfig(), ["data.name=mimic"]))
