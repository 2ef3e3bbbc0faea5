"""openi: a small ecgen-radiology/ + NLMCXR_png/ tree in the published layout (and Kaggle's
indiana_projections.csv beside it where views are tested), built with TFDS; records checked
against the PNG pixels written here, hand-written report texts, labels and views."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from fake_data import stored_source, write_csv
from PIL import Image

from radfm_jax.data.builders import skips
from radfm_jax.data.builders.openi import OpenI, OpenIConfig
from radfm_jax.data.builders.openi import builder as openi_builder
from radfm_jax.data.builders.openi.views import image_key
from radfm_jax.data.findings import CHEXPERT_FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.errors import ConfigError

SIZE = 32
J = {name: j for j, name in enumerate(CHEXPERT_FINDINGS)}


def _xml(uid: str, sections: dict[str, str], images: list[str], major=(), automatic=()) -> str:
    texts = "".join(f'<AbstractText Label="{label}">{text}</AbstractText>' for label, text in sections.items())
    mesh = "".join(f"<major>{m}</major>" for m in major) + "".join(f"<automatic>{a}</automatic>" for a in automatic)
    parents = "".join(
        f'<parentImage id="{i}"><figureId>F{n}</figureId><caption>Xray Chest PA and Lateral</caption>'
        f'<panel type="single"><url>/hadoop/storage/radiology/extract/{i}.jpg</url></panel></parentImage>'
        for n, i in enumerate(images, 1))
    return (f'<?xml version="1.0" encoding="utf-8"?><eCitation><meta type="rr"/><uId id="{uid}"/>'
            f'<pmcId id="{uid[3:]}"/><MedlineCitation Owner="Indiana University" Status="supplied">'
            f'<Article PubModel="Electronic"><Journal><JournalIssue><PubDate><Year>2013</Year></PubDate>'
            f'</JournalIssue></Journal><ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>'
            f'<Abstract>{texts}</Abstract></Article></MedlineCitation><MeSH>{mesh}</MeSH>{parents}</eCitation>')


# Three real-looking reports (wording in Open-i's style, XXXX where the de-identification hit).
CARDIOMEGALY = dict(
    uid="CXR2", images=["CXR2_IM-0652-1001", "CXR2_IM-0652-2001"],
    sections={"COMPARISON": "Chest radiographs XXXX.", "INDICATION": "XXXX-year-old male, chest pain.",
              "FINDINGS": "The cardiac silhouette is enlarged. Small left pleural effusion. "
                          "No pneumothorax. XXXX are intact.",
              "IMPRESSION": "Cardiomegaly with small left pleural effusion."},
    major=["Cardiomegaly/mild", "Pleural Effusion/left/small"], automatic=["cardiomegaly"])
NORMAL = dict(
    uid="CXR1", images=["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
    sections={"COMPARISON": "None.", "INDICATION": "Positive TB test",
              "FINDINGS": "The cardiac silhouette and mediastinum size are within normal limits. "
                          "There is no pulmonary edema. There is no focal consolidation. There are no "
                          "XXXX of a pleural effusion. There is no evidence of pneumothorax.",
              "IMPRESSION": "Normal chest x-XXXX."},
    major=["normal"])
# Nothing usable is left once the placeholders are removed: counted and skipped.
EMPTY = dict(uid="CXR3", images=["CXR3_IM-1384-1001"],
             sections={"INDICATION": "XXXX", "FINDINGS": "", "IMPRESSION": "XXXX XXXX."}, major=["XXXX"])
NO_IMAGES = dict(uid="CXR4", images=[], sections={"FINDINGS": "Lungs are clear.", "IMPRESSION": "Normal."})
CORRUPT = dict(uid="CXR5", images=["CXR5_IM-2117-1001"],
               sections={"FINDINGS": "Heart size normal. Lungs are clear.", "IMPRESSION": "No acute disease."})
MISSING_PNG = dict(uid="CXR6", images=["CXR6_IM-2192-1001"],
                   sections={"FINDINGS": "Lungs are clear.", "IMPRESSION": "Negative chest."})
# Filler normal studies so every split of a seeded patient-level split has some.
FILLER = [dict(uid=f"CXR{n}", images=[f"CXR{n}_IM-{n:04d}-1001"],
               sections={"FINDINGS": "Heart size and mediastinal contours are normal. The lungs are clear.",
                         "IMPRESSION": "No acute cardiopulmonary abnormality."}, major=["normal"])
          for n in range(10, 40)]


def _pixels(image_id: str) -> np.ndarray:
    seed = sum(image_id.encode())
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def _write_tree(root: Path) -> Path:
    (root / "ecgen-radiology").mkdir(parents=True)
    (root / "NLMCXR_png").mkdir()
    for report in [CARDIOMEGALY, NORMAL, EMPTY, NO_IMAGES, CORRUPT, MISSING_PNG, *FILLER]:
        xml = _xml(report["uid"], report["sections"], report["images"],
                   report.get("major", ()), report.get("automatic", ()))
        (root / "ecgen-radiology" / f"{report['uid'][3:]}.xml").write_text(xml)
        for image_id in report["images"]:
            if report is not MISSING_PNG:
                Image.fromarray(_pixels(image_id)).save(root / "NLMCXR_png" / f"{image_id}.png")
    (root / "NLMCXR_png" / "CXR5_IM-2117-1001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "ecgen-radiology" / "broken.xml").write_text("<eCitation><MedlineCitation>")
    return root


def _config(**kwargs) -> OpenIConfig:
    return OpenIConfig(spec=PreprocessSpec(kind="image2d", size=(SIZE, SIZE)),
                       val_fraction=0.25, test_fraction=0.25, **kwargs)


def _build(manual_dir, data_dir, config=None):
    builder = OpenI(config=config or _config(), data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tfds.disable_progress_bar()
    manual = _write_tree(tmp_path_factory.mktemp("openi_manual"))
    builder = _build(manual, tmp_path_factory.mktemp("openi_data"))
    sources = builder.as_data_source()
    records = {split: [sources[split][i] for i in range(len(sources[split]))] for split in sources}
    return builder, records


def _image(record) -> str:
    """A record's image id: its stored source_path is pseudonymous, NLMCXR_png/<16 hex>.png."""
    images = [i for r in [CARDIOMEGALY, NORMAL, EMPTY, CORRUPT, MISSING_PNG, *FILLER] for i in r["images"]]
    stored = {stored_source(f"NLMCXR_png/{i}.png", OpenI.SOURCE_FOLDERS): i for i in images}
    return stored[record["source_path"].decode()]


def _by_source(records):
    return {f"NLMCXR_png/{_image(r)}.png": (split, r) for split, recs in records.items() for r in recs}


def test_every_good_image_is_written_once_and_bad_ones_are_counted(built):
    builder, records = built
    by_source = _by_source(records)
    good = [CARDIOMEGALY, NORMAL, *FILLER]
    expected = {f"NLMCXR_png/{i}.png" for r in good for i in r["images"]}
    assert set(by_source) == expected
    assert sum(len(r) for r in records.values()) == len(expected)
    summary = builder.info.metadata["build_summary"]
    assert summary["skipped"] == {"empty_report": 1, "no_images": 1, "unreadable_image": 1,
                                  "missing_file": 1, "unparseable_row": 1}
    assert summary["written"] == {split: len(recs) for split, recs in records.items()}
    assert builder.info.metadata["label_names"] == list(CHEXPERT_FINDINGS)
    assert builder.info.metadata["preprocess"]["size"] == [SIZE, SIZE]


def test_pixels_are_the_png_pixels(built):
    _, records = built
    for source, (_, record) in _by_source(records).items():
        image_id = Path(source).stem
        assert record["image"].shape == (SIZE, SIZE, 1) and record["image"].dtype == np.uint8
        np.testing.assert_array_equal(record["image"][..., 0], _pixels(image_id), err_msg=source)


def test_report_text_placeholders_and_mesh(built):
    _, records = built
    by_source = _by_source(records)
    _, record = by_source["NLMCXR_png/CXR2_IM-0652-1001.png"]
    assert record["report"].decode() == (
        "FINDINGS: The cardiac silhouette is enlarged. Small left pleural effusion. No pneumothorax. "
        "___ are intact.\nIMPRESSION: Cardiomegaly with small left pleural effusion.")
    assert record["mesh"].decode() == "Cardiomegaly/mild; Pleural Effusion/left/small; cardiomegaly"
    _, normal = by_source["NLMCXR_png/CXR1_1_IM-0001-3001.png"]
    assert normal["report"].decode().endswith("IMPRESSION: Normal chest x-___.")
    assert normal["mesh"].decode() == "normal"


def test_labels_come_from_the_report(built):
    _, records = built
    by_source = _by_source(records)
    sick = by_source["NLMCXR_png/CXR2_IM-0652-2001.png"][1]["labels"]
    assert sick.shape == (14,) and sick.dtype == np.int8
    assert sick[J["cardiomegaly"]] == POSITIVE
    assert sick[J["pleural_effusion"]] == POSITIVE
    assert sick[J["pneumothorax"]] == NEGATIVE
    assert sick[J["no_finding"]] == NOT_MENTIONED
    assert sick[J["fracture"]] == NOT_MENTIONED
    normal = by_source["NLMCXR_png/CXR1_1_IM-0001-3001.png"][1]["labels"]
    assert normal[J["no_finding"]] == POSITIVE
    for finding in ("edema", "consolidation", "pneumothorax", "pleural_effusion"):
        assert normal[J[finding]] == NEGATIVE, finding


def test_patient_level_split_with_pseudonymous_ids(built):
    _, records = built
    assert all(records[split] for split in ("train", "val", "test"))
    by_source = _by_source(records)
    patients_by_split = {split: {r["patient_id"] for r in recs} for split, recs in records.items()}
    assert not patients_by_split["train"] & patients_by_split["val"]
    assert not patients_by_split["train"] & patients_by_split["test"]
    assert not patients_by_split["val"] & patients_by_split["test"]
    for report in (CARDIOMEGALY, NORMAL):  # both images of a report: one patient, one split
        (split_a, a), (split_b, b) = (by_source[f"NLMCXR_png/{i}.png"] for i in report["images"])
        assert split_a == split_b and a["patient_id"] == b["patient_id"] and a["study_id"] == b["study_id"]
        assert a["patient_id"] != a["study_id"]
    ids = {r[k].decode() for recs in records.values() for r in recs for k in ("patient_id", "study_id")}
    # Neither the report's uid nor its number survives (a pseudonym may happen to be all digits).
    raw = {u for report in (CARDIOMEGALY, NORMAL) for u in (report["uid"], report["uid"][3:])}
    assert not any("CXR" in i for i in ids) and not ids & raw


def test_the_split_depends_on_the_seed_only(built, tmp_path):
    _, records = built
    manual = _write_tree(tmp_path / "manual")
    other = _build(manual, tmp_path / "data", _config(split_seed=1)).as_data_source()
    first = {s: split for s, (split, _) in _by_source(records).items()}
    second = {f"NLMCXR_png/{_image(r)}.png": split for split in other for r in other[split]}
    assert first.keys() == second.keys() and first != second


def test_missing_manual_folder_or_reports_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="manual folder"):
        _build(tmp_path / "nowhere", tmp_path / "data")
    (tmp_path / "only_png" / "NLMCXR_png").mkdir(parents=True)
    (tmp_path / "only_png" / "NLMCXR_png" / "x.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="ecgen-radiology"):
        _build(tmp_path / "only_png", tmp_path / "data")


def test_experiment_builds_from_the_manual_dir_it_is_given(tmp_path):
    from radfm_jax.config.loading import load_experiment
    from radfm_jax.data.builders.registry import prepare_dataset

    config = load_experiment("experiments/cxr/openi_clip.py:smoke")
    assert config.data.name == "openi" and config.data.manual_dir == ""
    with pytest.raises(ConfigError, match="data.manual_dir"):
        prepare_dataset(config.data, tmp_path / "data")
    manual = _write_tree(tmp_path / "manual")
    config = load_experiment("experiments/cxr/openi_clip.py:smoke", [f"data.manual_dir={manual}"])
    builder = prepare_dataset(config.data, tmp_path / "data")
    assert builder.info.features["image"].shape == (config.data.image_size, config.data.image_size, 1)
    assert sum(builder.info.metadata["build_summary"]["written"].values()) == 2 * 2 + len(FILLER)


# -- views ---------------------------------------------------------------------------------------

# Kaggle's indiana_projections.csv for the tree above, in its own file names: CXR10 is not listed
# and CXR11's row has a projection Open-i does not have, so both views are unknown.
LATERAL = {"CXR1_1_IM-0001-3001", "CXR2_IM-0652-2001"}
UNKNOWN = {"CXR10_IM-0010-1001", "CXR11_IM-0011-1001"}
PROJECTIONS = [
    [1, "1_IM-0001-4001.dcm.png", "Frontal"], [1, "1_IM-0001-3001.dcm.png", "Lateral"],
    [2, "2_IM-0652-1001.dcm.png", "Frontal"], [2, "2_IM-0652-2001.dcm.png", "Lateral"],
    [5, "5_IM-2117-1001.dcm.png", "Frontal"], [6, "6_IM-2192-1001.dcm.png", "Frontal"],
    [11, "11_IM-0011-1001.dcm.png", "Oblique"],
    *([n, f"{n}_IM-{n:04d}-1001.dcm.png", "Frontal"] for n in range(12, 40)),
]
GOOD_IMAGES = {i for r in [CARDIOMEGALY, NORMAL, *FILLER] for i in r["images"]}


def _views(records) -> dict[str, str]:
    return {_image(r): r["view"].decode() for recs in records.values() for r in recs}


def test_nlm_and_kaggle_names_of_an_image_share_its_key():
    assert image_key("CXR1_1_IM-0001-4001") == image_key("1_IM-0001-4001.dcm.png") == "1/IM-0001-4001"
    assert image_key("CXR2_IM-0652-1001.png") == image_key("2_IM-0652-1001.dcm.png")
    assert image_key("CXR10_IM-0002-1001") != image_key("100_IM-0002-1001.dcm.png")


def test_without_a_projections_table_every_view_is_unknown(built):
    builder, records = built
    assert set(_views(records).values()) == {"unknown"}
    assert builder.info.metadata["view_source"] == "none"
    assert builder.info.metadata["build_summary"]["filtered"] == {}


def test_projections_table_gives_views_and_the_frontal_filter_drops_laterals(tmp_path):
    manual = _write_tree(tmp_path / "manual")
    write_csv(manual / "indiana_projections.csv", ["uid", "filename", "projection"], PROJECTIONS)
    every = _build(manual, tmp_path / "all", _config(views=()))
    views = _views(every.as_data_source())
    assert views.keys() == GOOD_IMAGES
    assert views == {i: "LATERAL" if i in LATERAL else "unknown" if i in UNKNOWN else "FRONTAL"
                     for i in GOOD_IMAGES}
    assert every.info.metadata["view_source"] == "indiana_projections.csv"
    frontal = _build(manual, tmp_path / "frontal")  # the default: frontal views only
    assert frontal.builder_config.views == ("FRONTAL",)
    assert _views(frontal.as_data_source()) == {i: "FRONTAL" for i in GOOD_IMAGES - LATERAL - UNKNOWN}
    summary = frontal.info.metadata["build_summary"]
    assert summary["filtered"] == {"view_LATERAL": 2, "view_unknown": 2}
    assert summary["skipped"]["unparseable_row"] == 2  # broken.xml and the Oblique row
    assert "indiana_projections.csv:8" in summary["skipped_examples"]["unparseable_row"]
    assert frontal.builder_config.name != every.builder_config.name


def test_views_are_the_ones_open_i_records():
    assert _config(views=("frontal",)).views == ("FRONTAL",)
    with pytest.raises(ValueError, match="no PA / AP"):
        _config(views=("PA", "AP"))


# -- skipped records -----------------------------------------------------------------------------

def test_skipped_records_are_summarised_per_reason_and_listed_in_a_file(tmp_path, caplog):
    manual = _write_tree(tmp_path / "manual")
    gone = [f"CXR{n}_IM-{n:04d}-1001" for n in range(10, 15)]
    for image_id in gone:
        (manual / "NLMCXR_png" / f"{image_id}.png").unlink()
    caplog.set_level(logging.WARNING)
    builder = _build(manual, tmp_path / "data")
    skipped = builder.info.metadata["build_summary"]["skipped"]
    assert skipped == {"missing_file": 6, "empty_report": 1, "no_images": 1, "unreadable_image": 1,
                       "unparseable_row": 1}
    # One warning per reason with its count, not one per record.
    lines = [r.getMessage() for r in caplog.records
             if r.name == skips.__name__ and r.levelno >= logging.WARNING]
    assert sorted(re.search(r"skipped (\d+) record\(s\) as (\w+)", m).group(2, 1) for m in lines) == \
        sorted((reason, str(n)) for reason, n in skipped.items())
    # Every skipped record, with its path, in the build's folder.
    details = Path(builder.data_dir) / skips.SKIPPED_RECORDS_FILE
    header, *rows = details.read_text().splitlines()
    assert header == "reason\tpath\tdetail" and len(rows) == sum(skipped.values())
    listed = [row.split("\t") for row in rows]
    assert {path for reason, path, _ in listed if reason == "missing_file"} == \
        {f"NLMCXR_png/{i}.png" for i in [*gone, "CXR6_IM-2192-1001"]}
    assert ("unreadable_image", "NLMCXR_png/CXR5_IM-2117-1001.png") in {(r, p) for r, p, _ in listed}
    # Without the projections table the views are unknown: said once.
    [views_note] = [r.getMessage() for r in caplog.records
                    if r.name == openi_builder.__name__ and r.levelno >= logging.WARNING]
    assert "indiana_projections.csv" in views_note and "'unknown'" in views_note


def test_a_failed_build_leaves_the_skipped_records_list_beside_its_folder(tmp_path):
    manual = _write_tree(tmp_path / "manual")
    for png in (manual / "NLMCXR_png").glob("*.png"):
        png.unlink()
    with pytest.raises(ConfigError, match="was skipped") as err:
        _build(manual, tmp_path / "data")
    details = Path(re.search(r"listed in (\S+)\.$", str(err.value)).group(1))
    assert details.name == skips.SKIPPED_RECORDS_FILE and details.parent.parent.name == "openi"
    assert "missing_file\tNLMCXR_png/CXR" in details.read_text()
