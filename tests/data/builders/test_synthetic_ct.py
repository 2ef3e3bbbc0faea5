"""synthetic_ct: determinism, CT-RATE's record layout, patient-level splits, every finding visible
in the voxels (counted in HU ranges with NumPy, sides read from the volume's affine and from the
stored array) and reports that agree with the labels and the rendered side."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from scipy import ndimage

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders import registry
from radfm_jax.data.builders.ct_rate import LABEL_NAMES, CtRate, volume_spec
from radfm_jax.data.builders.ct_rate.tables import ABNORMALITIES
from radfm_jax.data.builders.synthetic_ct import SyntheticCt, prepare
from radfm_jax.data.builders.synthetic_ct.builder import make_example
from radfm_jax.data.builders.synthetic_ct.render import render
from radfm_jax.data.builders.synthetic_ct.reports import write_report
from radfm_jax.data.builders.synthetic_ct.studies import (
    BILATERAL,
    FINDINGS,
    LEFT,
    LOBE_SIDE,
    RIGHT,
    Node,
    Nodule,
    sample_patients,
    sample_study,
)

COUNTS = {"num_train": 12, "num_val": 4, "num_test": 4}
TINY = 32  # image_size: (16, 32, 32) voxels
SPEC = volume_spec((32, 64, 64))  # 5.625 mm in-plane, 11.25 mm slices: the default records' grid
FINE = volume_spec((48, 96, 96))  # 3.75 mm in-plane, 7.5 mm slices: for measuring sizes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return prepare(str(tmp_path_factory.mktemp("ct")), image_size=TINY, seed=0, **COUNTS)


def _records(builder) -> dict[str, list[dict]]:
    return {split: [source[i] for i in range(len(source))]
            for split, source in builder.as_data_source().items()}


@pytest.fixture(scope="module")
def records(built):
    return _records(built)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def patients():
    return sample_patients(40, seed=3)


def _clean(patients, index: int = 0):
    """A study with no finding (its anatomy drawn as usual)."""
    st = sample_study(patients, index, 0, index, 3, np.random.default_rng(index))
    return dataclasses.replace(st, present=frozenset(), subtle=frozenset(), ctr=0.44)


def _with(st, *names, **fields):
    return dataclasses.replace(st, present=st.present | set(names), **fields)


def _hu(st, spec=SPEC, seed: int = 7):
    """HU values and the RAS world coordinates (x, y, z) of every voxel, from the affine."""
    rendered = render(st, spec, np.random.default_rng(seed))
    values = rendered.volume.values
    idx = np.indices(values.shape).reshape(3, -1)
    world = (rendered.volume.affine[:3, :3] @ idx + rendered.volume.affine[:3, 3:]).reshape(3, *values.shape)
    return values, world, rendered


# -- records ------------------------------------------------------------------------------------


def test_records_have_ct_rates_layout(built, records):
    d, h, w = built.builder_config.spec.size
    assert (d, h, w) == (TINY // 2, TINY, TINY)
    assert {k: len(v) for k, v in records.items()} == {"train": 12, "val": 4, "test": 4}
    for record in records["train"]:
        assert record["volume"].shape == (d, h, w, 2) and record["volume"].dtype == np.uint8
        assert record["labels"].shape == (18,) and record["labels"].dtype == np.int8
        assert set(np.unique(record["labels"])) <= {0, 1}
        assert _text(record["report"]).startswith("FINDINGS: ") and "\nIMPRESSION: " in _text(record["report"])
        assert _text(record["sex"]) in ("F", "M") and 18 <= int(record["age"]) <= 100
        spacing = np.asarray(built.builder_config.spec.spacing)  # (i, j, k) = (W, H, D) axes
        np.testing.assert_allclose(record["spacing"], spacing[::-1])
        assert record["spacing"].dtype == np.float32
        # The stored field of view is CT-RATE's: spacing x voxels along each axis.
        np.testing.assert_allclose(record["spacing"] * np.array([d, h, w]), 360.0)
    # The same volume / labels / report features as CT-RATE (which adds its own provenance).
    ct_rate = CtRate(config=CtRate.config_for(DataConfig(name="ct_rate", image_size=TINY)),
                     data_dir=str(built.data_dir)).info.features
    for key in ("volume", "labels", "report", "patient_id", "study_id"):
        assert repr(ct_rate[key]) == repr(built.info.features[key])


def test_label_names_and_recorded_spec(built):
    assert SyntheticCt.LABEL_NAMES == LABEL_NAMES and len(LABEL_NAMES) == 18
    assert set(FINDINGS) <= set(LABEL_NAMES)
    assert registry.label_names(built) == LABEL_NAMES
    assert registry.declared_label_names("synthetic_ct") == LABEL_NAMES
    assert registry.BUILDERS["synthetic_ct"] is SyntheticCt
    expected = SyntheticCt.config_for(DataConfig(name="synthetic_ct", image_size=TINY, **COUNTS)).spec
    assert registry.recorded_spec(built) == expected.to_metadata()


def test_same_seed_same_records_other_seed_differs(built, records, tmp_path):
    again = _records(prepare(str(tmp_path / "a"), image_size=TINY, seed=0, **COUNTS))
    for split in records:
        for one, two in zip(records[split], again[split]):
            assert one.keys() == two.keys()
            for key in one:
                np.testing.assert_array_equal(one[key], two[key])
    other = _records(prepare(str(tmp_path / "b"), image_size=TINY, seed=1, **COUNTS))
    assert not np.array_equal(records["train"][0]["volume"], other["train"][0]["volume"])
    assert [r["report"] for r in records["train"]] != [r["report"] for r in other["train"]]


def test_patients_never_cross_splits(records):
    ids = {split: [_text(r["patient_id"]) for r in rs] for split, rs in records.items()}
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])
    assert max(ids["train"].count(p) for p in ids["train"]) > 1  # some patient has several studies
    studies = [_text(r["study_id"]) for rs in records.values() for r in rs]
    assert len(set(studies)) == len(studies)


def test_labels_in_label_names_order(patients):
    spec = volume_spec((16, 32, 32))
    config = SyntheticCt.config_for(DataConfig(name="synthetic_ct", image_size=32))
    assert config.spec == spec
    seen = np.zeros(len(LABEL_NAMES), int)
    for i in range(60):
        st, record = make_example(config, patients, i % 40, i // 40, i)
        expected = np.array([name in st.present for name in LABEL_NAMES], np.int8)
        np.testing.assert_array_equal(record["labels"], expected)
        seen += record["labels"]
        if not st.present:
            assert not record["labels"].any()  # no finding: all zero
    # Positions follow CT-RATE's published columns: "Lung nodule" is the 10th, "Pleural effusion" the 13th.
    st = _with(_clean(patients), "lung_nodule", "pleural_effusion")
    assert np.flatnonzero(st.labels(LABEL_NAMES)).tolist() == [
        ABNORMALITIES.index("Lung nodule"), ABNORMALITIES.index("Pleural effusion")] == [9, 12]
    rendered = [i for i, name in enumerate(LABEL_NAMES) if name in FINDINGS]
    assert seen[[i for i in range(18) if i not in rendered]].sum() == 0
    assert (seen[rendered] > 0).sum() >= 5  # most findings occur in 60 studies


# -- findings in the voxels -----------------------------------------------------------------------


@pytest.mark.parametrize("side", [RIGHT, LEFT, BILATERAL])
def test_pleural_effusion_is_dependent_fluid_on_its_side(patients, side):
    st = _clean(patients)
    base, world, _ = _hu(st)
    wet, _, _ = _hu(_with(st, "pleural_effusion", effusion_side=side, effusion_depth_mm=35.0, effusion_hu=10.0))
    fluid = (np.abs(wet - base) > 300) & (wet > -40) & (wet < 60)
    x, y, z = world
    right, left = fluid[x > st.offset[0]].sum(), fluid[x < st.offset[0]].sum()
    expected_mm3 = 5_000  # well below a 35 mm-deep crescent over the base
    if side in (RIGHT, BILATERAL):
        assert right * np.prod(SPEC.spacing) > expected_mm3
    if side in (LEFT, BILATERAL):
        assert left * np.prod(SPEC.spacing) > expected_mm3
    if side != BILATERAL:
        assert (left if side == RIGHT else right) == 0
    # Dependent: behind the body's centre, and more of it in the lower half of the lungs.
    assert (y[fluid] < st.offset[1]).mean() > 0.95
    lungs = base < -600
    mid_z = np.median(z[lungs & (np.abs(x) < 150)])
    assert (fluid & (z < mid_z)).sum() > 2 * (fluid & (z > mid_z)).sum()
    # In the stored array, W index 0 is the patient's right: the fluid lies in that half.
    stored = SPEC.apply_volume(render(_with(st, "pleural_effusion", effusion_side=side, effusion_depth_mm=35.0,
                                            effusion_hu=10.0), SPEC, np.random.default_rng(7)).volume)
    stored_base = SPEC.apply_volume(render(st, SPEC, np.random.default_rng(7)).volume)
    changed = np.abs(stored[..., 0].astype(int) - stored_base[..., 0]) > 40  # lung window channel
    half = SPEC.size[2] // 2
    w_index = np.nonzero(changed)[2]
    if side == RIGHT:
        assert (w_index < half).mean() > 0.95
    elif side == LEFT:
        assert (w_index >= half).mean() > 0.95
    # H index 0 is anterior: the fluid is in the posterior half.
    assert (np.nonzero(changed)[1] >= SPEC.size[1] // 2).mean() > 0.95


def test_subtle_pleural_effusion_still_leaves_fluid(patients):
    st = _clean(patients, 1)
    base, world, _ = _hu(st)
    wet, _, _ = _hu(_with(st, "pleural_effusion", effusion_side=LEFT, effusion_depth_mm=6.0, effusion_hu=10.0))
    changed = np.abs(wet - base) > 100
    assert changed.sum() > 0 and np.all(world[0][changed] < st.offset[0])


def test_nodule_volume_follows_its_diameter(patients):
    st = _clean(patients, 2)
    base, world, _ = _hu(st, FINE)
    voxel = float(np.prod(FINE.spacing))
    measured = {}
    for diameter in (20.0, 30.0):
        nodule = Nodule(side=LEFT, lobe=3, diameter_mm=diameter, solid=True, hu=40.0)
        values, _, rendered = _hu(_with(st, "lung_nodule", nodules=(nodule,)), FINE)
        (placed,) = rendered.nodules
        assert placed.side == LEFT and LOBE_SIDE[placed.lobe] == LEFT and placed.centre[0] < st.offset[0]
        dense = np.abs(values - base) > 0.5 * (40.0 - (-860.0))
        measured[diameter] = dense.sum() * voxel
        sphere = np.pi / 6 * diameter ** 3
        assert measured[diameter] == pytest.approx(sphere, rel=0.35)
        # Every changed voxel lies within a voxel of the stated sphere.
        distance = np.sqrt(sum((world[a] - placed.centre[a]) ** 2 for a in range(3)))
        assert distance[np.abs(values - base) > 50].max() <= diameter / 2 + np.linalg.norm(FINE.spacing)
    assert measured[30.0] / measured[20.0] == pytest.approx(1.5 ** 3, rel=0.35)


def test_ground_glass_nodule_is_faint(patients):
    st = _clean(patients, 3)
    nodule = Nodule(side=RIGHT, lobe=0, diameter_mm=24.0, solid=False, hu=-550.0)
    values, world, rendered = _hu(_with(st, "lung_nodule", nodules=(nodule,)), FINE)
    (placed,) = rendered.nodules
    assert placed.side == RIGHT and placed.centre[0] > st.offset[0]
    distance = np.sqrt(sum((world[a] - placed.centre[a]) ** 2 for a in range(3)))
    core = values[distance < 6.0]
    assert -700 < np.median(core) < -400  # denser than lung, far below soft tissue


def test_emphysema_low_attenuation_fraction(patients):
    st = _clean(patients, 4)
    base, _, _ = _hu(st)
    # Lung: low-density voxels not connected to the air around the body (the in-plane faces).
    components, _ = ndimage.label(base < -500)
    outside = np.unique(np.concatenate([components[[0, -1]].ravel(), components[:, [0, -1]].ravel()]))
    lungs = (components > 0) & ~np.isin(components, outside)
    assert lungs.sum() * np.prod(SPEC.spacing) > 1_000_000  # over a litre of lung
    assert (base[lungs] < -930).mean() < 0.01
    values, _, _ = _hu(_with(st, "emphysema", emphysema_fraction=0.2, emphysema_kind=0))
    low = (values < -930) & lungs
    assert 0.1 < low.sum() / lungs.sum() < 0.3


def test_consolidation_fills_part_of_its_lobe(patients):
    st = _clean(patients, 5)
    base, world, _ = _hu(st)
    values, _, rendered = _hu(_with(st, "consolidation", consolidation_lobe=2, consolidation_extent=0.5,
                                    consolidation_hu=30.0))
    dense = (base < -600) & (values > -100)
    assert dense.sum() * np.prod(SPEC.spacing) > 50_000  # half a lobe: far more than 50 ml
    assert rendered.consolidation_lobe == 2 and np.all(world[0][dense] > st.offset[0])  # right lower lobe


def test_pericardial_effusion_and_cardiomegaly(patients):
    st = _clean(patients, 6)
    base, _, _ = _hu(st)
    wet, _, _ = _hu(_with(st, "pericardial_effusion", pericardial_mm=15.0))
    fluid = (np.abs(wet - base) > 50) & (wet > -30) & (wet < 50)
    assert fluid.sum() * np.prod(SPEC.spacing) > 50_000  # a 15 mm shell around the heart
    counts = []
    for ctr in (0.44, 0.56, 0.68):
        values, _, _ = _hu(_with(st, "cardiomegaly", ctr=ctr))
        counts.append(((values > 0) & (values < 80)).sum())
    assert counts[0] < counts[1] < counts[2]


def test_lymphadenopathy_adds_soft_tissue_nodes(patients):
    st = dataclasses.replace(_clean(patients, 7), normal_nodes=())
    base, _, _ = _hu(st, FINE)
    nodes = (Node(0, 20.0), Node(2, 25.0))
    values, _, _ = _hu(_with(st, "lymphadenopathy", nodes=nodes), FINE)
    grown = (values - base > 60) & (values > 0)
    ellipsoids = sum(4 / 3 * np.pi * (n.short_axis_mm / 2) ** 3 * 1.4 for n in nodes)
    assert grown.sum() * np.prod(FINE.spacing) > 0.4 * ellipsoids


# -- reports --------------------------------------------------------------------------------------

# Written here, independently of reports.py's templates: words that name each finding and cues
# that negate a sentence.
MENTIONS = {
    "cardiomegaly": r"cardiomegaly|\bheart\b|\bcardiac\b",
    "pericardial_effusion": r"pericardial",
    "lymphadenopathy": r"lymph|\bnodes?\b",
    "emphysema": r"emphysema|low-attenuation",
    "lung_nodule": r"nodul|\bmass\b",
    "consolidation": r"consolidat|pneumonia|bronchogram",
    "pleural_effusion": r"\bpleural\b",
}
NEGATION = r"\b(?:no|not|without|absent|negative|free|normal|unremarkable|clear)\b"


def _sentences(report: str) -> list[str]:
    findings = report.split("\nIMPRESSION:")[0].removeprefix("FINDINGS: ")
    return [s for s in re.split(r"(?<=\.)\s+", findings) if s]


def _check_report(report: str, labels: dict[str, int]) -> dict[str, list[str]]:
    """Asserts the report agrees with labels; returns the unnegated sentences per finding."""
    stated: dict[str, list[str]] = {name: [] for name in MENTIONS}
    for sentence in _sentences(report):
        negated = re.search(NEGATION, sentence, re.IGNORECASE) is not None
        for name, pattern in MENTIONS.items():
            if re.search(pattern, sentence, re.IGNORECASE):
                assert labels[name] == (0 if negated else 1), (name, sentence, report)
                if not negated:
                    stated[name].append(sentence)
    for name, value in labels.items():
        assert bool(stated[name]) == bool(value), (name, report)
    return stated


def test_reports_agree_with_labels(patients):
    config = SyntheticCt.config_for(DataConfig(name="synthetic_ct", image_size=32))
    wordings = set()
    for i in range(80):
        _, record = make_example(config, patients, i % 40, i // 40, 1000 + i)
        labels = dict(zip(LABEL_NAMES, record["labels"].tolist()))
        _check_report(record["report"], {name: labels[name] for name in MENTIONS})
        wordings.update(_sentences(record["report"]))
    assert len(wordings) > 80  # the wording varies


def test_report_sides_match_the_rendered_side(patients):
    words = {RIGHT: "right", LEFT: "left", BILATERAL: "bilateral"}
    # (effusion side, nodule side, nodule lobe): the nodule often on the other side.
    cases = [(RIGHT, LEFT, 4), (LEFT, RIGHT, 1), (BILATERAL, RIGHT, 0), (RIGHT, RIGHT, 2), (LEFT, LEFT, 3)]
    for i, (side, nodule_at, lobe) in enumerate(cases):
        nodule = Nodule(side=nodule_at, lobe=lobe, diameter_mm=12.0, solid=True, hu=40.0)
        st = _with(_clean(patients, 10 + i), "pleural_effusion", "lung_nodule", effusion_side=side,
                   effusion_depth_mm=25.0, effusion_hu=10.0, nodules=(nodule,))
        _, _, rendered = _hu(st)
        (placed,) = rendered.nodules
        for text_seed in range(4):
            report = write_report(st, rendered, np.random.default_rng(text_seed))
            labels = {name: int(name in st.present) for name in MENTIONS}
            stated = _check_report(report, labels)
            for sentence in stated["pleural_effusion"]:
                assert words[side] in sentence.lower()
                assert not {words[s] for s in words if s != side} & set(re.findall(r"[a-z]+", sentence.lower()))
            nodule_side = "right" if placed.centre[0] > st.offset[0] else "left"  # RAS: +x is right
            for sentence in stated["lung_nodule"]:
                assert nodule_side in sentence.lower()
                assert ({"right", "left"} - {nodule_side}).isdisjoint(re.findall(r"[a-z]+", sentence.lower()))
