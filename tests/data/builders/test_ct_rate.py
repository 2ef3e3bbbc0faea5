"""ct_rate: small trees in CT-RATE's published layout (first release: raw values + metadata
rescale and unit header spacing; re-release "_fixed": HU with real header spacing), built with
TFDS; volumes checked against NumPy windowing of the HU values written here."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from fake_data import source

from radfm_jax.data.builders.ct_rate import CtRate, CtRateConfig
from radfm_jax.data.builders.ct_rate.hounsfield import HounsfieldUndecided, decide_hu, to_hounsfield
from radfm_jax.data.builders.ct_rate.tables import ABNORMALITIES, ScanMetadata
from radfm_jax.data.builders.skips import SKIPPED_RECORDS_FILE
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.volume import Volume
from radfm_jax.errors import ConfigError

SHAPE = (16, 16, 8)  # NIfTI (i, j, k)
SPACING = (1.5, 1.5, 3.0)
SPEC = PreprocessSpec(kind="volume3d", size=(8, 16, 16), windows=("lung", "mediastinum"),
                      spacing=SPACING)
SLOPE, INTERCEPT = 1.0, -1024.0  # what CT-RATE's metadata lists for both releases
GOOD = {  # volume -> (findings, impression)
    "train_1_a_1": ("Trachea and both main bronchi are open. No pleural effusion.", "Emphysema."),
    "train_1_a_2": ("Trachea and both main bronchi are open. No pleural effusion.", "Emphysema."),
    "train_2_a_1": ("Heart size is enlarged. Bilateral pleural effusion.", "Cardiomegaly, pleural effusion."),
    "train_3_b_1": ("Millimetric nodules in both lungs.", "Lung nodules."),
    "train_4_a_1": ("Calcified atheroma plaques in the aorta.", "Arterial wall calcification."),
    "train_5_a_1": ("Consolidation in the right lower lobe.", "Pneumonia."),
    "train_6_a_1": ("Mediastinal lymph nodes are enlarged.", "Lymphadenopathy."),
    "valid_1_a_1": ("Ground-glass opacities in both lungs.", "Viral pneumonia?"),
    "valid_1_a_2": ("Ground-glass opacities in both lungs.", "Viral pneumonia?"),
    "valid_2_a_1": ("No pathology.", "Normal chest CT."),
}
EMPTY_REPORT = "train_8_a_1"
CORRUPT = "train_7_a_1"
CONSTANT = "train_10_a_1"  # a failed export: every stored voxel 0
REPORTS = {**GOOD, EMPTY_REPORT: ("", ""), CORRUPT: ("Minimal atelectasis.", "Atelectasis."),
           CONSTANT: ("No pathology.", "Normal chest CT.")}
UNLISTED = "train_9_a_1"  # a file no table names


def _hu(name: str) -> np.ndarray:
    """A chest-like HU volume: air around the body, tissue and bone inside, scanner padding
    (-3024 HU) in the corners outside the reconstruction circle."""
    rng = np.random.default_rng(sum(name.encode()))
    hu = rng.normal(-1000, 8, SHAPE).clip(-1024, None)
    body = np.zeros(SHAPE, bool)
    body[3:13, 4:12, :] = True
    hu[body] = rng.uniform(-900, 1200, body.sum())
    hu[:2, :2, :] = -3024
    return np.rint(hu).astype(np.int16)


def _labels(name: str) -> list[int]:
    return list(np.random.default_rng(sum(name.encode()) + 1).integers(0, 2, len(ABNORMALITIES)))


def _pool(name: str) -> str:
    return name.split("_")[0]


def _write_volume(path: Path, values: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(values, affine), path)


def _volume_path(root: Path, folder: str, name: str) -> Path:
    patient, scan = "_".join(name.split("_")[:2]), "_".join(name.split("_")[:3])
    return root / "dataset" / folder / patient / scan / f"{name}.nii.gz"


def _write_tables(root: Path, xy_spacing: float, z_spacing: float, names=None) -> None:
    names = names or [*GOOD, EMPTY_REPORT, CORRUPT, CONSTANT]
    files = {"train": ("train_reports.csv", "train_predicted_labels.csv", "train_metadata.csv"),
             "valid": ("validation_reports.csv", "valid_predicted_labels.csv", "validation_metadata.csv")}
    for pool, (reports, labels, metadata) in files.items():
        rows = [n for n in names if _pool(n) == pool]
        for folder, file, header, make in (
            ("radiology_text_reports", reports,
             ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"],
             lambda n: [f"{n}.nii.gz", "Cough.", "Non-contrast chest CT.", *REPORTS[n]]),
            ("multi_abnormality_labels", labels, ["VolumeName", *ABNORMALITIES],
             lambda n: [f"{n}.nii.gz", *_labels(n)]),
            ("metadata", metadata,
             ["VolumeName", "Manufacturer", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing"],
             lambda n: [f"{n}.nii.gz", "SIEMENS", SLOPE, INTERCEPT, f"[{xy_spacing}, {xy_spacing}]", z_spacing]),
        ):
            (root / "dataset" / folder).mkdir(parents=True, exist_ok=True)
            with (root / "dataset" / folder / file).open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(make(n) for n in rows)


def _write_first_release(root: Path) -> Path:
    """Raw values (HU - INTERCEPT), an identity affine (no spacing), spacing in the metadata."""
    for name in [*GOOD, EMPTY_REPORT, UNLISTED]:
        _write_volume(_volume_path(root, _pool(name), name),
                      ((_hu(name) - INTERCEPT) / SLOPE).astype(np.int16), np.eye(4))
    _write_volume(_volume_path(root, "train", CONSTANT), np.zeros(SHAPE, np.int16), np.eye(4))
    corrupt = _volume_path(root, "train", CORRUPT)
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 not a gzip stream")
    _write_tables(root, xy_spacing=SPACING[0], z_spacing=SPACING[2])
    return root


def _write_re_release(root: Path) -> Path:
    """HU values with the spacing in the header; the metadata's spacing differs (header wins)
    and one first-release copy sits beside its fixed twin."""
    for name in GOOD:
        _write_volume(_volume_path(root, f"{_pool(name)}_fixed", name), _hu(name), np.diag([*SPACING, 1.0]))
    _write_volume(_volume_path(root, "train", "train_1_a_1"),
                  (_hu("train_1_a_1") - INTERCEPT).astype(np.int16), np.eye(4))
    (root / "dataset" / "valid").mkdir(parents=True)
    _write_tables(root, xy_spacing=0.7, z_spacing=1.25, names=list(GOOD))
    return root


def _reference(name: str) -> np.ndarray:
    """The DICOM linear window (PS3.3 C.11.2.1.2.1) of the HU values, quantised to 256 levels,
    in the model layout: D inferior->superior (k), H anterior->posterior (j reversed), W the
    patient's right->left (i reversed)."""
    hu = _hu(name).astype(np.float64)
    channels = [np.clip((hu - (c - 0.5)) / (w - 1) + 0.5, 0, 1) for c, w in ((-600, 1500), (50, 350))]
    stacked = np.rint(np.stack(channels, axis=-1) * 255).astype(np.uint8)
    return stacked[::-1, ::-1, :, :].transpose(2, 1, 0, 3)


def _config(**kwargs) -> CtRateConfig:
    return CtRateConfig(spec=SPEC, val_fraction=0.4, **kwargs)


def _build(manual_dir, data_dir, config=None):
    builder = CtRate(config=config or _config(), data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def _records(builder, manual_dir) -> dict[str, tuple[str, dict]]:
    """{volume name: (split, record)}, the name from the stored (pseudonymous) source_path
    mapped back with the key."""
    sources = builder.as_data_source()
    return {Path(source(r, manual_dir)).name.removesuffix(".nii.gz"): (split, r)
            for split in sources for r in (sources[split][i] for i in range(len(sources[split])))}


@pytest.fixture(scope="module")
def first_release(tmp_path_factory):
    tfds.disable_progress_bar()
    manual = _write_first_release(tmp_path_factory.mktemp("ct_v1"))
    builder = _build(manual, tmp_path_factory.mktemp("d1"))
    return builder, _records(builder, manual)


@pytest.fixture(scope="module")
def re_release(tmp_path_factory):
    tfds.disable_progress_bar()
    manual = _write_re_release(tmp_path_factory.mktemp("ct_v2"))
    builder = _build(manual, tmp_path_factory.mktemp("d2"))
    return builder, _records(builder, manual)


def test_both_releases_give_the_windowed_hu_volume(first_release, re_release):
    for builder, records, how in ((*first_release, "rescale"), (*re_release, "stored")):
        assert set(records) == set(GOOD)
        for name, (_, record) in records.items():
            assert record["volume"].shape == (8, 16, 16, 2) and record["volume"].dtype == np.uint8
            assert record["hu"].decode() == how, name
            np.testing.assert_allclose(record["volume"], _reference(name), atol=1, err_msg=name)
    assert all(rec["source_path"].decode().startswith("dataset/train_fixed/")
               for split, rec in re_release[1].values() if split != "test")


def test_bad_records_are_counted_and_skipped(first_release, re_release):
    summary = first_release[0].info.metadata["build_summary"]
    assert summary["skipped"] == {"empty_report": 1, "unreadable_image": 2, "no_report": 1}
    assert sum(summary["written"].values()) == len(GOOD)
    listed = (Path(first_release[0].data_dir) / SKIPPED_RECORDS_FILE).read_text()
    assert f"{CONSTANT}.nii.gz" in listed and "every voxel is 0:" in listed
    summary = re_release[0].info.metadata["build_summary"]
    assert summary["skipped"] == {} and summary["filtered"] == {"older_release_copy": 1}


def test_reports_labels_and_metadata(first_release):
    builder, records = first_release
    _, record = records["train_2_a_1"]
    assert record["report"].decode() == ("FINDINGS: Heart size is enlarged. Bilateral pleural effusion."
                                         "\nIMPRESSION: Cardiomegaly, pleural effusion.")
    for name, (_, rec) in records.items():
        assert rec["labels"].dtype == np.int8
        np.testing.assert_array_equal(rec["labels"], _labels(name), err_msg=name)
    assert builder.info.metadata["label_names"][:3] == [
        "medical_material", "arterial_wall_calcification", "cardiomegaly"]
    assert len(builder.info.metadata["label_names"]) == 18
    assert builder.info.metadata["preprocess"] == SPEC.to_metadata()


def test_official_pools_and_patient_level_val(first_release):
    _, records = first_release
    splits = {name: split for name, (split, _) in records.items()}
    assert {n for n, s in splits.items() if s == "test"} == {n for n in GOOD if n.startswith("valid_")}
    assert {"train", "val"} <= set(splits.values())
    assert splits["train_1_a_1"] == splits["train_1_a_2"]
    patients = {s: {r["patient_id"] for sp, r in records.values() if sp == s} for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    one, two = records["valid_1_a_1"][1], records["valid_1_a_2"][1]
    assert one["patient_id"] == two["patient_id"] and one["study_id"] == two["study_id"]
    assert one["patient_id"] != records["train_1_a_1"][1]["patient_id"]  # pools number apart
    ids = {r[k].decode() for _, r in records.values() for k in ("patient_id", "study_id")}
    assert not any("train" in i or "valid" in i for i in ids)


def test_hu_modes_decide_per_volume():
    hu = _hu("train_1_a_1").astype(np.float32)
    raw = hu - INTERCEPT
    meta = ScanMetadata(rescale_slope=SLOPE, rescale_intercept=INTERCEPT, spacing=SPACING)
    assert decide_hu(raw, meta) == "rescale"
    assert decide_hu(hu, meta) == "stored"
    affine = np.diag([*SPACING, 1.0])
    # Forcing a reading is obeyed, so an HU volume forced through the rescale is shifted twice.
    mode, twice = to_hounsfield(Volume(hu, affine), meta, "rescale")
    assert mode == "rescale"
    np.testing.assert_array_equal(twice.values, hu + INTERCEPT)
    np.testing.assert_array_equal(to_hounsfield(Volume(raw, affine), meta, "auto")[1].values, hu)
    # Low end 501: not air as stored, -523 HU rescaled is not air either.
    with pytest.raises(HounsfieldUndecided):
        decide_hu(np.full(SHAPE, 500.0, np.float32) + np.arange(8, dtype=np.float32), meta)
    # Slope 1 and intercept 0 make both readings one: nothing can be rescaled twice.
    assert decide_hu(hu, ScanMetadata(1.0, 0.0, SPACING)) == "stored"


def test_missing_tables_or_folders_are_config_errors(tmp_path):
    root = _write_re_release(tmp_path / "manual")
    (root / "dataset" / "metadata" / "validation_metadata.csv").unlink()
    with pytest.raises(ConfigError, match="validation_metadata.csv"):
        _build(root, tmp_path / "data")
    empty = tmp_path / "empty"
    (empty / "dataset").mkdir(parents=True)
    with pytest.raises(ConfigError, match="train_fixed"):
        _build(empty, tmp_path / "data")


def test_config_from_data_config():
    from radfm_jax.config.schema import DataConfig

    config = CtRate.config_for(DataConfig(name="ct_rate", image_size=64, windows=("lung", "-600,1500")))
    # 360 mm field of view: 360 / 64 in-plane, 360 / 32 along z.
    assert config.spec.size == (32, 64, 64) and config.spec.spacing == (5.625, 5.625, 11.25)
    assert config.spec.windows == ("lung", (-600.0, 1500.0)) and config.spec.kind == "volume3d"
    assert CtRate.config_for(DataConfig(name="ct_rate")).spec.windows == ("lung", "mediastinum")
    with pytest.raises(ConfigError, match="center,width"):
        CtRate.config_for(DataConfig(name="ct_rate", windows=("-600;1500",)))
