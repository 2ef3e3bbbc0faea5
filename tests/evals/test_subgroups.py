"""Subgroup report at one global threshold: injected gaps are found, absent ones are not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radfm_jax.evals.operating_points import binary_metrics, choose_threshold
from radfm_jax.evals.plots import subgroup_plot
from radfm_jax.evals.subgroups import age_bins, subgroup_report


def _cohort(seed: int, n_patients: int = 400, female_positive_shift: float = 0.0):
    """1–3 studies per patient, sex per patient, 30 % positive studies, scores N(1.5 t, 1);
    female positives' scores shifted by ``female_positive_shift`` (a missed-disease bias)."""
    rng = np.random.default_rng(seed)
    patient_ids = np.repeat(np.arange(n_patients), rng.integers(1, 4, n_patients))
    sex = np.where(rng.random(n_patients) < 0.5, "F", "M")[patient_ids]
    targets = rng.random(patient_ids.size) < 0.3
    scores = rng.normal(size=patient_ids.size) + 1.5 * targets
    scores += female_positive_shift * (targets & (sex == "F"))
    return scores, targets, patient_ids, sex


def _threshold_on_validation(female_positive_shift: float = 0.0) -> float:
    scores, targets, _, _ = _cohort(99, female_positive_shift=female_positive_shift)
    return choose_threshold(scores, targets, ("fpr", 0.2))


def test_age_bins() -> None:
    ages = [25, 40, 59.9, 60, 85, -1, float("nan"), None, 250]
    assert age_bins(ages).tolist() == [
        "0-40", "40-60", "40-60", "60-80", "80-200", "unknown", "unknown", "unknown", "unknown",
    ]
    assert age_bins([17, 18, 39], edges=(18, 40)).tolist() == ["unknown", "18-40", "18-40"]
    with pytest.raises(ValueError, match="increasing"):
        age_bins([30], edges=(40, 20))


def test_group_estimates_match_direct_computation() -> None:
    scores, targets, patient_ids, sex = _cohort(0)
    threshold = _threshold_on_validation()
    report = subgroup_report(scores, targets, patient_ids, {"sex": sex}, threshold, n_resamples=50)
    for group in ("F", "M"):
        member = sex == group
        key = f"sex/{group}"
        direct = binary_metrics(scores[member], targets[member], threshold)
        rest = binary_metrics(scores[~member], targets[~member], threshold)
        assert report[f"{key}/tpr"] == pytest.approx(direct["sensitivity"])
        assert report[f"{key}/fpr"] == pytest.approx(direct["fpr"])
        auroc = roc_auc_score(targets[member], scores[member])
        assert report[f"{key}/auroc"] == pytest.approx(auroc)
        gap = direct["sensitivity"] - rest["sensitivity"]
        assert report[f"{key}/tpr_vs_rest"] == pytest.approx(gap)
        assert report[f"{key}/n_studies"] == member.sum()
        assert report[f"{key}/n_patients"] == np.unique(patient_ids[member]).size
        assert report[f"{key}/n_positive"] + report[f"{key}/n_negative"] == member.sum()
        assert report[f"{key}/tpr_ci_low"] <= report[f"{key}/tpr"] <= report[f"{key}/tpr_ci_high"]
    json.dumps(report)  # flat and JSON-ready


def test_injected_tpr_gap_is_found() -> None:
    scores, targets, patient_ids, sex = _cohort(1, female_positive_shift=-1.0)
    threshold = _threshold_on_validation(female_positive_shift=-1.0)
    report = subgroup_report(scores, targets, patient_ids, {"sex": sex}, threshold, n_resamples=300)
    assert (report["sex/gap/tpr_max_group"], report["sex/gap/tpr_min_group"]) == ("M", "F")
    assert report["sex/gap/tpr"] > 0.2
    assert report["sex/gap/tpr_ci_low"] > 0.0
    assert report["sex/F/tpr_vs_rest_ci_high"] < 0.0
    # Only positives were shifted: no FPR gap to find.
    assert report["sex/gap/fpr_ci_low"] <= 0.0 <= report["sex/gap/fpr_ci_high"]


def test_without_a_gap_the_interval_covers_zero() -> None:
    # A 95 % event per cohort, so check it over several independent cohorts.
    threshold = _threshold_on_validation()
    covered = []
    for seed in range(20):
        scores, targets, patient_ids, sex = _cohort(100 + seed)
        report = subgroup_report(scores, targets, patient_ids, {"sex": sex}, threshold,
                                 n_resamples=200, seed=seed)
        covered.append(report["sex/gap/tpr_ci_low"] <= 0.0 <= report["sex/gap/tpr_ci_high"])
    assert sum(covered) >= 17


def test_small_groups_are_skipped(tmp_path) -> None:
    scores, targets, patient_ids, sex = _cohort(2)
    view = np.where(np.arange(sex.size) < 6, "LATERAL", "PA")  # six studies: too few of each
    sex = np.where(patient_ids == patient_ids[-1], "X", sex)  # one patient of unknown sex
    report = subgroup_report(scores, targets, patient_ids, {"sex": sex, "view": view}, 0.5,
                             n_resamples=50, min_count=10)
    for skipped in ("sex/X", "view/LATERAL"):
        assert "needs 10 of each" in report[f"{skipped}/skipped"]
        assert f"{skipped}/tpr" not in report and f"{skipped}/n_studies" in report
    assert "sex/gap/tpr" in report and "sex/M/tpr" in report
    assert report["view/gap/skipped"] == "fewer than two groups with enough cases"
    assert "view/PA/vs_rest_skipped" in report
    path = subgroup_plot(report, tmp_path / "subgroups.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_rejected() -> None:
    scores, targets, patient_ids, sex = _cohort(3, n_patients=50)
    with pytest.raises(ValueError, match="one value per row"):
        subgroup_report(scores, targets, patient_ids, {"sex": sex[:-1]}, 0.5)
    with pytest.raises(ValueError, match="cannot be keys"):
        subgroup_report(scores, targets, patient_ids, {"age": np.full(sex.size, "18/40")}, 0.5)
    with pytest.raises(ValueError, match="one entry per row"):
        subgroup_report(scores, targets, patient_ids[:-1], {"sex": sex}, 0.5)


def test_subgroup_attributes_keep_what_the_split_records_and_refuse_what_it_lacks():
    """Open-i-like metadata (views only): the default set quietly keeps `view`; asking for sex
    explicitly is an error naming what the split does record."""
    import dataclasses

    from radfm_jax.config.schema import EvalConfig
    from radfm_jax.errors import ConfigError
    from radfm_jax.evals.evaluators.classification import subgroup_attributes

    openi_like = {"sex": np.array(["", ""]), "age": np.array([-1, -1]), "view": np.array(["FRONTAL", "unknown"])}
    assert subgroup_attributes(openi_like, EvalConfig()) == ("view",)
    with pytest.raises(ConfigError, match=r"\['sex'\].*records \['view'\]"):
        subgroup_attributes(openi_like, dataclasses.replace(EvalConfig(), subgroups=("sex", "view")))
    full = {"sex": np.array(["F", "M"]), "age": np.array([30, 70]), "view": np.array(["PA", "AP"])}
    assert subgroup_attributes(full, EvalConfig()) == ("sex", "age", "view")
    assert subgroup_attributes(full, dataclasses.replace(EvalConfig(), subgroups=("age",))) == ("age",)
