"""synthetic_cxr: determinism, patient-level splits, schema, report/label agreement, and findings
that show in the pixels (checked with image measures written here, not the renderer's own)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from radfm_jax.data.builders import synthetic_cxr
from radfm_jax.data.builders.synthetic_cxr import render as render_module
from radfm_jax.data.builders.synthetic_cxr import studies as S
from radfm_jax.data.builders.synthetic_cxr.render import render
from radfm_jax.data.findings import FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

SIZES = dict(num_train=400, num_val=50, num_test=60, image_size=64)
J = {f: j for j, f in enumerate(FINDINGS)}


def _records(builder) -> dict[str, list[dict]]:
    return {split: [src[i] for i in range(len(src))] for split, src in builder.as_data_source().items()}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return _records(synthetic_cxr.prepare(str(tmp_path_factory.mktemp("cxr")), seed=0, **SIZES))


@pytest.fixture(scope="module")
def pooled(records):
    recs = [r for split in records.values() for r in split]
    images = np.stack([r["image"][..., 0] for r in recs]).astype(np.float32) / 255
    labels = np.stack([r["labels"] for r in recs])
    frontal = np.array([r["view"] != b"LATERAL" for r in recs])
    return images, labels, frontal


def _by_study(recs):
    return {r["study_id"]: r for split in recs.values() for r in split}


def test_same_seed_same_records_other_seed_differs(tmp_path, records):
    again = _by_study(_records(synthetic_cxr.prepare(str(tmp_path / "a"), seed=0, **SIZES)))
    first = _by_study(records)
    assert again.keys() == first.keys()
    for sid, rec in first.items():
        for key, value in rec.items():
            np.testing.assert_array_equal(again[sid][key], value, err_msg=f"{sid}:{key}")
    other = _records(synthetic_cxr.prepare(str(tmp_path / "b"), seed=1, **SIZES))
    a = np.stack(sorted((r["image"] for r in records["test"]), key=lambda x: x.tobytes()))
    b = np.stack(sorted((r["image"] for r in other["test"]), key=lambda x: x.tobytes()))
    assert not np.array_equal(a, b)
    assert {r["report"] for r in records["train"]} != {r["report"] for r in other["train"]}


def test_prepare_reuses_a_finished_build(tmp_path):
    small = dict(num_train=20, num_val=5, num_test=5, image_size=32)
    first = synthetic_cxr.prepare(str(tmp_path), seed=3, **small)
    folder = Path(first.data_dir)
    files = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    second = synthetic_cxr.prepare(str(tmp_path), seed=3, **small)
    assert Path(second.data_dir) == folder and folder.parent.name == "n20-v5-t5-s32-seed3"
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == files


def test_split_sizes_are_exact_and_patients_never_cross_splits(records):
    assert {k: len(v) for k, v in records.items()} == {"train": 400, "val": 50, "test": 60}
    patients = {split: {r["patient_id"] for r in recs} for split, recs in records.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    per_patient = {}
    for r in records["train"]:
        per_patient[r["patient_id"]] = per_patient.get(r["patient_id"], 0) + 1
    assert max(per_patient.values()) <= 4 and len(per_patient) < 400  # some patients return
    assert len({r["study_id"] for recs in records.values() for r in recs}) == 510


def test_schema(records):
    views, sexes = set(), set()
    for r in records["train"]:
        assert r["image"].shape == (64, 64, 1) and r["image"].dtype == np.uint8
        assert r["labels"].shape == (7,) and r["labels"].dtype == np.int8
        assert set(r["labels"].tolist()) <= {POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED}
        assert re.fullmatch(rb"p\d{8}", r["patient_id"]) and re.fullmatch(rb"s\d{8}", r["study_id"])
        assert 18 <= int(r["age"]) <= 100
        views.add(r["view"])
        sexes.add(r["sex"])
        report = r["report"].decode()
        assert report.startswith("FINDINGS: ") and "\nIMPRESSION: " in report
        assert len(report.split()) <= 120
    assert views == {b"PA", b"AP", b"LATERAL"} and sexes == {b"F", b"M"}


# --- An independent reading of the report, sentence by sentence. ---------------------------------
_KEYWORDS = {
    "cardiomegaly": ("cardiomegaly", "heart", "cardiac silhouette", "cardiac enlargement", "cardiothoracic"),
    "pleural_effusion": ("effusions?", "costophrenic", "pleural fluid", "pleural spaces are clear",
                         "fluid in the pleural", "pleural spaces are free of fluid"),
    "pneumothorax": ("pneumothora(x|ces)", "fully expanded", "air in the pleural"),
    "consolidation": ("consolidation", "consolidative", "lungs are clear", "clear lungs", "airspace", "infiltrate",
                      "opacification", "air bronchograms", "free of focal airspace", "aerated"),
    "lung_lesion": ("nodules?", "nodular", "mass(es)?", "lung lesion"),
    "support_devices": ("support devices", "tubes?", "(?<!pleural )lines?", "catheters?", "pacemaker", "pacing",
                        "medical devices"),
}
_HEDGES = ("possible", "possibly", "cannot exclude", "questionable", "borderline", "may", "could",
           "not excluded")
_NEGATIONS = re.compile(r"^no\b|\bno\b|\bnormal\b|\bsharp\b|\bare clear\b|\bclear lungs\b|not seen|"
                        r"not identified|\babsent\b|negative for|free of|\bwithout\b|resolved|not enlarged|"
                        r"fully expanded|clear bilaterally|and clear")


def _read(report: str) -> dict[str, int]:
    found = {f: set() for f in _KEYWORDS}
    for sentence in re.split(r"(?<=\.)\s+|\n", report.lower().replace("findings:", "").replace("impression:", "")):
        for finding, words in _KEYWORDS.items():
            if any(re.search(rf"\b{w}\b", sentence) for w in words):
                if any(h in sentence for h in _HEDGES):
                    found[finding].add(UNCERTAIN)
                elif _NEGATIONS.search(sentence):
                    found[finding].add(NEGATIVE)
                else:
                    found[finding].add(POSITIVE)
    out = {}
    for finding, values in found.items():
        assert len(values) <= 1, (finding, report)  # a report never contradicts itself
        out[finding] = values.pop() if values else NOT_MENTIONED
    return out


def test_labels_agree_with_report_text(records):
    normal = re.compile(r"no acute|normal chest radiograph|no active disease|unremarkable chest|"
                        r"no radiographic evidence of acute|the chest is normal")
    for r in records["train"]:
        report, labels = r["report"].decode(), r["labels"]
        read = _read(report)
        for finding, value in read.items():
            assert labels[J[finding]] == value, (finding, report, labels)
        others = labels[1:]
        if labels[J["no_finding"]] == POSITIVE:
            assert normal.search(report.lower()) and not (others == POSITIVE).any(), report
        elif labels[J["no_finding"]] == NEGATIVE:
            assert (others == POSITIVE).any() and not normal.search(report.lower()), report
        else:
            assert (others == UNCERTAIN).any() and not (others == POSITIVE).any(), report


def test_reports_use_the_prompt_phrases_and_vary(records):
    reports = [r["report"].decode().lower() for r in records["train"]]
    for phrase in ("no acute cardiopulmonary abnormality", "cardiomegaly", "pleural effusion",
                   "pneumothorax", "consolidation", "lung nodule", "support devices",
                   "no pleural effusion", "no pneumothorax", "possible", "bilateral", "moderate"):
        assert sum(phrase in t for t in reports) >= 5, phrase
    assert len(set(reports)) > 0.8 * len(reports)


def test_prevalence_and_subtle_fraction():
    plans = S.plan_splits({"train": 4096, "val": 0, "test": 0}, 0)
    patients = S.sample_patients(int(plans["train"].patient.max()) + 1, 0)
    st = S.sample_studies(plans["train"], patients, np.random.default_rng(0), 0)
    prevalence = st.present.mean(0)
    assert np.all((prevalence > 0.08) & (prevalence < 0.4)), prevalence
    subtle = st.subtle[:, 1:].sum(0) / st.present[:, 1:].sum(0)
    assert np.all((subtle > 0.12) & (subtle < 0.3)), subtle
    assert st.present[:, 1:].sum(1).max() >= 3  # findings co-occur


# --- Findings in the pixels. -------------------------------------------------------------------
def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(score)) + 1.0
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _zone(images, rows, cols):
    s = images.shape[1]
    return images[:, int(rows[0] * s):int(rows[1] * s), int(cols[0] * s):int(cols[1] * s)]


def _heart_width(images: np.ndarray) -> np.ndarray:
    """Width of the bright run through the centre of a lower-chest intensity profile."""
    s = images.shape[1]
    profile = _zone(images, (0.55, 0.68), (0, 1)).mean(1)
    lung = np.percentile(profile[:, s // 10: -s // 10], 15, axis=1, keepdims=True)
    centre = profile[:, int(0.45 * s):int(0.6 * s)].max(1, keepdims=True)
    bright = profile > (lung + centre) / 2
    widths = []
    for row in bright:
        c = s // 2 + s // 32
        left, right = c, c
        while left > 0 and row[left - 1]:
            left -= 1
        while right < s - 1 and row[right + 1]:
            right += 1
        widths.append(right - left + 1 if row[c] else 0)
    return np.array(widths, float)


def _check(pooled, finding, score, minimum):
    images, labels, frontal = pooled
    keep = frontal & (labels[:, J[finding]] != UNCERTAIN)
    auc = _auroc(score(images[keep]), labels[keep, J[finding]] == POSITIVE)
    assert auc > minimum, (finding, auc)


def test_effusion_brightens_the_lung_bases(pooled):
    def basal(im):
        return _zone(im, (0.66, 0.8), (0.08, 0.38)).mean((1, 2)) + _zone(im, (0.66, 0.8), (0.62, 0.92)).mean((1, 2))
    _check(pooled, "pleural_effusion", basal, 0.7)


def test_cardiomegaly_widens_the_heart(pooled):
    _check(pooled, "cardiomegaly", _heart_width, 0.85)


def test_pneumothorax_darkens_the_upper_lungs(pooled):
    def darkest(im):
        upper = np.concatenate([_zone(im, (0.15, 0.55), (0.08, 0.4)), _zone(im, (0.15, 0.55), (0.6, 0.92))], 2)
        return -np.percentile(upper.reshape(len(im), -1), 5, axis=1)
    _check(pooled, "pneumothorax", darkest, 0.85)


@pytest.mark.parametrize("finding", ["pleural_effusion", "pneumothorax", "consolidation",
                                     "lung_lesion", "support_devices"])
def test_each_finding_changes_only_its_own_studies(finding):
    """Re-rendering a chunk without one finding changes exactly the studies that had it, and
    every clear (non-subtle) case by a visible amount."""
    plans = S.plan_splits({"train": 384, "val": 0, "test": 0}, 5)
    patients = S.sample_patients(int(plans["train"].patient.max()) + 1, 5)
    st = S.sample_studies(plans["train"], patients, np.random.default_rng(5), 5)
    j = S.F[finding]
    present = st.present.copy()
    present[:, j] = False
    devices = st.devices & (finding != "support_devices")
    without = dataclasses.replace(st, present=present, devices=devices)
    diff = np.abs(render(st, 64, np.random.default_rng(7)).astype(int)
                  - render(without, 64, np.random.default_rng(7)).astype(int))
    has = st.present[:, j]
    assert diff[~has].max() == 0
    assert (diff[has].max((1, 2)) > 0).all()
    visible = (diff > 20).sum((1, 2))
    clear = has & ~st.subtle[:, j]
    assert visible[clear].min() >= 5, (finding, np.sort(visible[clear])[:5])


def test_larger_images_render(tmp_path):
    plans = S.plan_splits({"train": 8, "val": 0, "test": 0}, 0)
    patients = S.sample_patients(int(plans["train"].patient.max()) + 1, 0)
    st = S.sample_studies(plans["train"], patients, np.random.default_rng(0), 0)
    img = render(st, 128, np.random.default_rng(0))
    assert img.shape == (8, 128, 128) and img.dtype == np.uint8 and img.std() > 20


# --- The sex subgroup shift (data.subgroup_shift="sex"). ------------------------------------------
def _footprint(st, finding: str, shifted) -> np.ndarray:
    """Per study, the pixels a finding visibly changes (> 20 grey levels): the study rendered
    with and without it (the same random streams), as in the test above."""
    present = st.present.copy()
    present[:, S.F[finding]] = False
    without = dataclasses.replace(st, present=present, devices=st.devices & (finding != "support_devices"))
    diff = np.abs(render(st, 64, np.random.default_rng(7), shifted).astype(int)
                  - render(without, 64, np.random.default_rng(7), shifted).astype(int))
    return (diff > 20).sum((1, 2))


def test_sex_shift_makes_female_findings_subtler_and_off_it_does_not():
    plans = S.plan_splits({"train": 384, "val": 0, "test": 0}, 11)
    patients = S.sample_patients(int(plans["train"].patient.max()) + 1, 11)
    st = S.sample_studies(plans["train"], patients, np.random.default_rng(11), 11)
    female = st.sex == S.SEXES.index("F")
    assert render_module.subgroup_shifted(st, "none") is None
    np.testing.assert_array_equal(render_module.subgroup_shifted(st, "sex"), female)
    for finding in ("pleural_effusion", "pneumothorax", "consolidation", "lung_lesion"):
        has = st.present[:, S.F[finding]] & (st.view != S.LATERAL)
        assert (has & female).sum() >= 10 and (has & ~female).sum() >= 10, finding
        ratio = {}
        for shift in ("none", "sex"):
            size = _footprint(st, finding, render_module.subgroup_shifted(st, shift))
            ratio[shift] = size[has & female].mean() / size[has & ~female].mean()
        assert 0.6 < ratio["none"] < 1.6, (finding, ratio)  # no built-in gap between the sexes
        assert ratio["sex"] < 0.5 * ratio["none"], (finding, ratio)  # the shift opens one


def test_sex_shift_changes_only_female_studies_with_findings_and_its_own_folder(tmp_path, records):
    shifted_builder = synthetic_cxr.prepare(str(tmp_path), seed=0, subgroup_shift="sex", **SIZES)
    assert Path(shifted_builder.data_dir).parent.name == "n400-v50-t60-s64-seed0-shift-sex"
    plain, shifted = _by_study(records), _by_study(_records(shifted_builder))
    assert plain.keys() == shifted.keys()
    changed = {"F": 0, "M": 0}
    for sid, rec in plain.items():
        for key in rec:  # reports, labels, ids, demographics: unchanged
            if key != "image":
                np.testing.assert_array_equal(shifted[sid][key], rec[key], err_msg=f"{sid}:{key}")
        differs = not np.array_equal(shifted[sid]["image"], rec["image"])
        changed[rec["sex"].decode()] += differs
        if rec["labels"][J["no_finding"]] == POSITIVE:
            assert not differs, sid  # nothing to draw more subtly
    assert changed["M"] == 0 and changed["F"] > 50
    with pytest.raises(ValueError, match="subgroup_shift"):
        synthetic_cxr.SyntheticCxrConfig(subgroup_shift="age")
