"""Volume transforms (data/volume_transforms.py): decode, body-centred fit, resampling against
scipy.ndimage.zoom, the laterality-aware flip, augmentation, the pipeline's dispatch, and a tiny
CT-RATE tree built with TFDS read through pipeline.make_train_loader."""

from __future__ import annotations

import csv
import dataclasses

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import ndimage

from radfm_jax.config.schema import DataConfig
from radfm_jax.data import pipeline
from radfm_jax.data import transforms as T
from radfm_jax.data import volume_transforms as VT
from radfm_jax.data.builders.ct_rate import CtRate, CtRateConfig
from radfm_jax.data.builders.ct_rate.tables import ABNORMALITIES, LABEL_NAMES
from radfm_jax.data.model_inputs import volume_input_shape
from radfm_jax.data.preprocessing import PreprocessSpec
from radfm_jax.data.tokenizer import train_tokenizer
from radfm_jax.data.volume import Volume
from radfm_jax.data.volume_ops import crop_or_pad, to_model_layout
from radfm_jax.errors import ConfigError

REPORTS = (
    "FINDINGS: Consolidation in the right lower lobe. No left pleural effusion.\nIMPRESSION: Pneumonia.",
    "FINDINGS: Left upper lobe nodule. Right-sided rib fracture.\nIMPRESSION: LEFT nodule.",
    "FINDINGS: Heart size is normal. Bilateral emphysema.\nIMPRESSION: Emphysema.",
)
CFG = DataConfig(name="ct_rate", input_size=16, max_text_len=24, augment=True)
SIZE = volume_input_shape(CFG)  # (8, 16, 16)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(REPORTS * 4, 120, tmp_path_factory.mktemp("tok") / "tok.model")


def _record(seed: int = 0, shape=(12, 24, 20)) -> dict:
    """A ct_rate-like record: air (lung window ~60, other windows 0) around an off-centre body."""
    rng = np.random.default_rng(seed)
    volume = np.zeros((*shape, 2), np.uint8)
    volume[..., 0] = 60
    volume[3:10, 2:14, 9:19] = rng.integers(40, 256, size=(7, 12, 10, 2), dtype=np.uint8)
    return {
        "volume": volume, "report": REPORTS[seed % len(REPORTS)].encode(),
        "labels": rng.integers(0, 2, size=len(LABEL_NAMES)).astype(np.int8),
        "patient_id": b"p", "study_id": b"s", "hu": b"stored", "source_path": b"x.nii.gz",
    }


def test_decode_volume_range_and_dtype():
    volume = np.arange(2 * 3 * 4 * 2, dtype=np.uint8).reshape(2, 3, 4, 2) * 5
    volume[1, 2, 3, 1] = 255
    out = VT.DecodeVolume().map({"volume": volume, "report": b"r"})
    assert "volume" not in out and out["report"] == b"r"
    assert out["image"].dtype == np.float32 and out["image"].shape == volume.shape
    np.testing.assert_allclose(out["image"], volume / 255.0, rtol=0, atol=1e-7)
    assert out["image"].min() == 0.0 and out["image"].max() == 1.0
    with pytest.raises(ValueError, match="uint8"):
        VT.DecodeVolume().map({"volume": volume.astype(np.int16)})
    with pytest.raises(ValueError, match=r"\(D, H, W, C\)"):
        VT.DecodeVolume().map({"volume": volume[..., 0]})


def test_fit_volume_crops_about_the_body_not_the_array_centre():
    # A whole-body-sized array, body off centre; channel 0 is a lung window (air ~0.23, not 0).
    image = np.zeros((40, 60, 60, 2), np.float32)
    image[..., 0] = 0.23
    image[25:35, 5:25, 30:56] = np.random.default_rng(0).uniform(0.3, 1.0, (10, 20, 26, 2))
    image[0, 0, 0] = (0.0, 0.9)  # bright in one channel only (air in the other): not body
    out = VT.FitVolume(size=(16, 32, 32)).map({"image": image})["image"]
    # Body bounding box [25, 35) x [5, 25) x [30, 56): centres 30, 15, 43; windows of 16 / 32 / 32
    # start at 22, -1 -> 0 (kept inside the array) and 27.
    np.testing.assert_array_equal(out, image[22:38, 0:32, 27:59])
    assert not np.array_equal(out, crop_or_pad(image, (16, 32, 32)))  # not the array centre
    # No body at all: the array centre, as volume_ops.crop_or_pad.
    air = np.zeros((21, 30, 30, 1), np.float32)
    air[::3, ::2, ::5] = 0.01  # below the threshold
    np.testing.assert_array_equal(VT.FitVolume(size=(8, 16, 16)).map({"image": air})["image"],
                                  crop_or_pad(air, (8, 16, 16)))


def test_fit_volume_pads_small_volumes_with_air():
    image = np.random.default_rng(1).uniform(0.2, 1, (4, 8, 7, 2)).astype(np.float32)
    out = VT.FitVolume(size=(8, 16, 16)).map({"image": image})["image"]
    assert out.shape == (8, 16, 16, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[2:6, 4:12, 4:11], image)
    assert out.sum() == pytest.approx(image.sum())  # the rest is 0
    # One axis cropped (about the body), the others padded.
    mixed = np.zeros((20, 8, 8, 1), np.float32)
    mixed[2:6] = 0.5
    out = VT.FitVolume(size=(6, 10, 10)).map({"image": mixed})["image"]
    np.testing.assert_array_equal(out[:, 1:9, 1:9], mixed[1:7])


def test_resample_to_spacing_matches_scipy_zoom_and_a_hand_computed_case():
    rng = np.random.default_rng(2)
    image = rng.random((5, 6, 7, 2), dtype=np.float32)
    element = {"image": image, "spacing": np.array([2.0, 1.0, 3.0], np.float32)}
    out = VT.ResampleToSpacing(target_spacing=(1.0, 1.0, 1.0)).map(element)
    # Integer zooms: the centre-aligned convention is zoom's grid_mode=True.
    expected = ndimage.zoom(image, (2, 1, 3, 1), order=1, grid_mode=True, mode="nearest")
    assert out["image"].shape == (10, 6, 21, 2) == expected.shape
    np.testing.assert_allclose(out["image"], expected, atol=1e-6)
    np.testing.assert_array_equal(out["spacing"], [1.0, 1.0, 1.0])

    # Two slices 0 and 1 at 2 mm -> 1 mm: new centres at old positions -0.25, 0.25, 0.75, 1.25;
    # linear between the two, the edge value repeated beyond them.
    ramp = np.array([0.0, 1.0], np.float32).reshape(2, 1, 1, 1)
    got = VT.ResampleToSpacing(target_spacing=(1.0, 1.0, 1.0)).map(
        {"image": ramp, "spacing": np.array([2.0, 1.0, 1.0], np.float32)})["image"]
    np.testing.assert_allclose(got.ravel(), [0.0, 0.25, 0.75, 1.0], atol=1e-6)

    # Shrinking stays in [0, 1]; records without a spacing (ct_rate) pass through.
    small = VT.ResampleToSpacing(target_spacing=(2.0, 2.0, 2.0)).map(
        {"image": image, "spacing": np.ones(3, np.float32)})["image"]
    assert small.shape == (2, 3, 4, 2) and small.min() >= 0 and small.max() <= 1
    assert VT.ResampleToSpacing(target_spacing=(2.0, 2.0, 2.0)).map({"image": image})["image"] is image


def test_patient_left_right_is_array_axis_2_of_the_model_layout():
    # A RAS volume whose values are the voxel index i (x grows towards the patient's right):
    # in to_model_layout it varies along axis 2 only, largest (patient's right) at index 0.
    i = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 3, 4), np.float32)
    layout = to_model_layout(Volume(values=i, affine=np.eye(4)), "RAS")
    assert layout.shape == (4, 3, 5) and VT.LEFT_RIGHT_AXIS == 2
    np.testing.assert_array_equal(layout[0, 0, :], [4, 3, 2, 1, 0])
    assert np.ptp(layout, axis=(0, 1)).max() == 0


def test_flip_mirrors_left_right_and_swaps_the_report():
    element = VT.DecodeVolume().map(_record(1))
    element["report"] = b"Left nodule. LEFT lobe; right-sided fracture, bright leftward lumen, left."
    always = VT.RandomVolumeFlip(probability=1.0, label_names=LABEL_NAMES)
    flipped = always.random_map(element, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped["image"], element["image"][:, :, ::-1])
    assert flipped["report"] == b"Right nodule. RIGHT lobe; left-sided fracture, bright leftward lumen, right."
    np.testing.assert_array_equal(flipped["labels"], element["labels"])  # CT-RATE: none lateral
    twice = always.random_map(flipped, np.random.default_rng(1))
    for key in ("image", "report", "labels"):
        np.testing.assert_array_equal(twice[key], element[key], err_msg=key)
    assert always.random_map({**element, "report": "left"}, np.random.default_rng(0))["report"] == "right"
    never = VT.RandomVolumeFlip(probability=0.0).random_map(element, np.random.default_rng(0))
    assert never["image"] is element["image"] and never["report"] == element["report"]


def test_flip_swaps_lateral_label_columns():
    names = ("left_pleural_effusion", "cardiomegaly", "right_pleural_effusion", "Left lung nodule",
             "Right lung nodule")
    assert VT.mirrored_label_order(names) == (2, 1, 0, 4, 3)
    labels = np.array([1, 0, -1, 0, 1], np.int8)
    element = {"image": np.zeros((2, 2, 3, 1), np.float32), "report": b"", "labels": labels}
    flip = VT.RandomVolumeFlip(probability=1.0, label_names=names)
    out = flip.random_map(element, np.random.default_rng(0))
    np.testing.assert_array_equal(out["labels"], [-1, 0, 1, 1, 0])
    np.testing.assert_array_equal(flip.random_map(out, np.random.default_rng(0))["labels"], labels)
    with pytest.raises(ValueError, match="right_effusion"):
        VT.RandomVolumeFlip(label_names=("left_effusion", "cardiomegaly"))


def test_shift_scale_identity_and_about_the_centre():
    image = np.random.default_rng(3).random((7, 9, 11, 2), dtype=np.float32)
    same = VT.RandomShiftScale(max_shift=(0.0, 0.0, 0.0), min_scale=1.0, max_scale=1.0)
    np.testing.assert_allclose(same.random_map({"image": image}, np.random.default_rng(0))["image"],
                               image, atol=1e-6)
    scaled = VT.RandomShiftScale(max_shift=(0.0, 0.0, 0.0), min_scale=0.9, max_scale=1.1)
    out = scaled.random_map({"image": image}, np.random.default_rng(0))["image"]
    assert out.shape == image.shape and out.dtype == np.float32 and not np.allclose(out, image)
    np.testing.assert_allclose(out[3, 4, 5], image[3, 4, 5], atol=1e-6)  # the centre stays
    moved = VT.RandomShiftScale().random_map({"image": image}, np.random.default_rng(5))["image"]
    assert moved.min() >= 0 and moved.max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_shift_scale_equals_scipy_affine_transform(seed):
    # The separable interpolation against scipy's 3-D one with the same diagonal map.
    image = np.random.default_rng(seed).random((6, 10, 9, 2), dtype=np.float32)
    op = VT.RandomShiftScale(max_shift=(2.0, 3.0, 3.0), min_scale=0.8, max_scale=1.25)
    out = op.random_map({"image": image}, np.random.default_rng(seed))["image"]
    rng = np.random.default_rng(seed)  # the draws random_map made, in its order
    scale = rng.uniform(0.8, 1.25)
    shift = np.array([rng.uniform(-m, m) for m in (2.0, 3.0, 3.0)])
    centre = (np.asarray(image.shape[:3], np.float64) - 1) / 2
    expected = ndimage.affine_transform(image, np.array([1 / scale] * 3 + [1.0]),
                                        offset=np.append(centre - (centre + shift) / scale, 0.0),
                                        order=1, mode="constant", cval=0.0, prefilter=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_intensity_jitter_is_the_hand_computation():
    image = np.random.default_rng(6).random((3, 4, 5, 2), dtype=np.float32)
    out = VT.RandomIntensityJitter(brightness=0.2, contrast=0.4).random_map(
        {"image": image}, np.random.default_rng(1))["image"]
    rng = np.random.default_rng(1)
    k, b = rng.uniform(0.6, 1.4, size=2), rng.uniform(-0.2, 0.2, size=2)
    m = image.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(out, np.clip((image - m) * k + m + b, 0, 1), atol=1e-6)


def test_intensity_jitter_stays_in_range_and_is_per_channel():
    image = np.random.default_rng(4).random((4, 6, 6, 2), dtype=np.float32)
    jitter = VT.RandomIntensityJitter(brightness=0.3, contrast=0.5)
    for seed in range(10):
        out = jitter.random_map({"image": image}, np.random.default_rng(seed))["image"]
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    ratio = (out - out.mean(axis=(0, 1, 2))) / (image - image.mean(axis=(0, 1, 2)))
    assert not np.isclose(np.median(ratio[..., 0]), np.median(ratio[..., 1]))


def test_volume_input_shape_is_ct_rates_stored_size_rule():
    assert volume_input_shape(DataConfig(input_size=64)) == (32, 64, 64)
    assert CtRate.config_for(DataConfig(image_size=64)).spec.size == (32, 64, 64)


def test_train_transforms_reproducible_with_grains_rng(tok):
    record = _record(0)
    ts = VT.volume_train_transforms(tok, CFG, SIZE, LABEL_NAMES)
    a = T.apply_transforms(record, ts, np.random.default_rng(7))
    b = T.apply_transforms(record, ts, np.random.default_rng(7))
    assert set(a) == {"image", "tokens", "labels"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["image"].shape == (*SIZE, 2) and a["image"].dtype == np.float32
    assert a["tokens"].shape == (CFG.max_text_len,) and a["labels"].dtype == np.int8
    lo, hi = (0 - T.IMAGE_MEAN) / T.IMAGE_STD, (1 - T.IMAGE_MEAN) / T.IMAGE_STD
    assert a["image"].min() >= lo - 1e-6 and a["image"].max() <= hi + 1e-6
    others = [T.apply_transforms(record, ts, np.random.default_rng(s))["image"] for s in range(8, 11)]
    assert not any(np.array_equal(a["image"], o) for o in others)

    # Evaluation: no randomness; a record carrying a spacing is resampled first.
    ev = VT.volume_eval_transforms(tok, CFG, SIZE, target_spacing=(1.0, 1.0, 1.0))
    out = T.apply_transforms({**record, "spacing": np.array([2.0, 1.0, 1.0], np.float32)}, ev)
    assert out["image"].shape == (*SIZE, 2)
    with pytest.raises(ValueError, match=r"\(D, H, W, C\)"):
        T.ModelInputs().map({**out, "image": out["image"][None]})


def test_pipeline_dispatches_on_the_data_set(tok):
    volume = pipeline.transforms_for(tok, CFG, train=True, label_names=LABEL_NAMES)
    assert isinstance(volume[0], VT.DecodeVolume)
    assert [t for t in volume if isinstance(t, VT.FitVolume)][0].size == SIZE
    assert [t for t in volume if isinstance(t, VT.RandomVolumeFlip)][0].label_names == LABEL_NAMES
    volume_eval = pipeline.transforms_for(tok, CFG, train=False)
    assert isinstance(volume_eval[0], VT.DecodeVolume)
    assert not any(isinstance(t, pipeline.grain.transforms.RandomMap) for t in volume_eval)
    for name in ("synthetic_cxr", "mimic_cxr"):
        cfg = dataclasses.replace(CFG, name=name)
        for train in (True, False):
            ts = pipeline.transforms_for(tok, cfg, train=train)
            assert isinstance(ts[0], T.DecodeImage) and not any(isinstance(t, VT.DecodeVolume) for t in ts)
    with pytest.raises(ValueError, match="VOLUME_DATASETS"):  # a volume read as a 2D record
        T.apply_transforms(_record(0), pipeline.transforms_for(tok, dataclasses.replace(CFG, name="x"),
                                                                train=False))


def test_in_memory_volume_records_through_the_loaders(tok):
    source = [_record(i) for i in range(10)]
    loader = pipeline.make_train_loader(source, tokenizer=tok, data_cfg=CFG, global_batch_size=4,
                                        seed=0, label_names=LABEL_NAMES)
    first = [next(loader) for _ in range(2)]
    state = loader.get_state()
    rest = [next(loader) for _ in range(3)]
    assert first[0]["image"].shape == (4, *SIZE, 2) and first[0]["labels"].shape == (4, 18)
    again = pipeline.make_train_loader(source, tokenizer=tok, data_cfg=CFG, global_batch_size=4,
                                       seed=0, label_names=LABEL_NAMES)
    again.set_state(state)
    for x, y in zip([next(again) for _ in range(3)], rest):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    batches = list(pipeline.make_eval_batches(source, tokenizer=tok, data_cfg=CFG, batch_size=4))
    assert len(batches) == 3 and batches[-1]["mask"].tolist() == [True, True, False, False]
    assert batches[0]["image"].shape == (4, *SIZE, 2)


# A tiny CT-RATE tree (the "_fixed" re-release layout: HU values, spacing in the header).
_SHAPE, _SPACING = (16, 16, 8), (1.5, 1.5, 3.0)
_NAMES = ("train_1_a_1", "train_2_a_1", "train_3_a_1", "train_4_a_1", "train_5_a_1", "valid_1_a_1")


def _write_ct_rate(root) -> None:
    rng = np.random.default_rng(0)
    for name in _NAMES:
        pool, patient = name.split("_")[0], "_".join(name.split("_")[:2])
        hu = rng.normal(-1000, 8, _SHAPE)
        hu[3:13, 4:12, :] = rng.uniform(-900, 1200, (10, 8, _SHAPE[2]))
        path = root / "dataset" / f"{pool}_fixed" / patient / name[:-2] / f"{name}.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.rint(hu).astype(np.int16), np.diag([*_SPACING, 1.0])), path)
    tables = {"train": ("train_reports.csv", "train_predicted_labels.csv", "train_metadata.csv"),
              "valid": ("validation_reports.csv", "valid_predicted_labels.csv", "validation_metadata.csv")}
    for pool, files in tables.items():
        names = [n for n in _NAMES if n.startswith(pool)]
        contents = (
            ("radiology_text_reports", ["VolumeName", "ClinicalInformation_EN", "Technique_EN",
                                        "Findings_EN", "Impressions_EN"],
             lambda n: [f"{n}.nii.gz", "Cough.", "CT.", "Left lower lobe nodule.", "Nodule."]),
            ("multi_abnormality_labels", ["VolumeName", *ABNORMALITIES],
             lambda n: [f"{n}.nii.gz", *([0, 1] * 9)]),
            ("metadata", ["VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing"],
             lambda n: [f"{n}.nii.gz", 1.0, -1024.0, "[1.5, 1.5]", 3.0]),
        )
        for (folder, header, row), file in zip(contents, files):
            (root / "dataset" / folder).mkdir(parents=True, exist_ok=True)
            with (root / "dataset" / folder / file).open("w", newline="") as f:
                csv.writer(f).writerows([header, *(row(n) for n in names)])


def test_a_built_ct_rate_data_set_through_make_train_loader(tok, tmp_path):
    tfds.disable_progress_bar()
    _write_ct_rate(tmp_path / "manual")
    spec = PreprocessSpec(kind="volume3d", size=SIZE, windows=("lung", "mediastinum"), spacing=_SPACING)
    builder = CtRate(config=CtRateConfig(spec=spec, val_fraction=0.2), data_dir=str(tmp_path / "data"),
                     file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
    train = builder.as_data_source()["train"]
    assert len(train) >= 2
    cfg = dataclasses.replace(CFG, worker_count=0)
    loader = pipeline.make_train_loader(train, tokenizer=tok, data_cfg=cfg, global_batch_size=2, seed=0,
                                        label_names=LABEL_NAMES)
    batch = next(loader)
    assert batch["image"].shape == (2, *SIZE, 2) and batch["image"].dtype == np.float32
    assert batch["tokens"].shape == (2, cfg.max_text_len) and batch["labels"].shape == (2, 18)
    test = list(pipeline.make_eval_batches(builder.as_data_source()["test"], tokenizer=tok,
                                           data_cfg=cfg, batch_size=2))
    assert test[0]["image"].shape == (2, *SIZE, 2) and test[0]["mask"].tolist() == [True, False]


def test_volume_spacing_from_the_config_resamples_before_fitting(tok):
    cfg = dataclasses.replace(CFG, volume_spacing=(2.0, 1.0, 1.0))
    ts = pipeline.transforms_for(tok, cfg, train=False)
    [resample] = [t for t in ts if isinstance(t, VT.ResampleToSpacing)]
    assert resample.target_spacing == (2.0, 1.0, 1.0)
    assert ts.index(resample) < next(i for i, t in enumerate(ts) if isinstance(t, VT.FitVolume))
    record = {**_record(0), "spacing": np.array([1.0, 1.0, 1.0], np.float32)}
    decoded = VT.DecodeVolume().map(record)
    by_hand = VT.FitVolume(size=SIZE).map(resample.map(decoded))["image"]  # 12 slices -> 6, padded to 8
    got = T.apply_transforms(record, ts)["image"]
    np.testing.assert_allclose(got, (by_hand - T.IMAGE_MEAN) / T.IMAGE_STD, atol=1e-6)
    assert not any(isinstance(t, VT.ResampleToSpacing) for t in pipeline.transforms_for(tok, CFG, train=False))
    for bad, problem in (((1.0, 1.0), "three sizes"), ((1.0, 1.0, 1.0), "2D images")):
        name = "synthetic_cxr" if problem == "2D images" else CFG.name
        with pytest.raises(ConfigError, match=problem):
            pipeline.transforms_for(tok, dataclasses.replace(CFG, name=name, volume_spacing=bad), train=True)
