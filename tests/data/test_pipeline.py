"""Grain pipeline, transforms and device placement, on a tiny TFDS data set built here."""

from __future__ import annotations

import dataclasses

import grain
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.features import cxr_features
from radfm_jax.data import transforms as T
from radfm_jax.data.device_put import prefetch_to_device, to_global_batch
from radfm_jax.data.findings import FINDINGS
from radfm_jax.data.pipeline import make_eval_batches, make_train_loader, prepare_tokenizer
from radfm_jax.errors import ConfigError

IMAGE_SIZE = 32
NUM_TRAIN = 200
NUM_TEST = 37
_WORDS = (
    "heart size normal no pleural effusion pneumothorax lungs clear mild cardiomegaly left right "
    "lower lobe consolidation support devices in place nodule stable small large"
).split()


def _report(rng: np.random.Generator, i: int) -> str:
    findings = " ".join(rng.choice(_WORDS, size=int(rng.integers(5, 25))))
    impression = " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 8))))
    return f"FINDINGS: record {i} {findings}.\nIMPRESSION: {impression}."


class TinyCxr(tfds.core.GeneratorBasedBuilder):
    """Same features as synthetic_cxr, random content; the image's [0, 0] pixel is i % 256."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=cxr_features(IMAGE_SIZE),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(NUM_TRAIN, 0), "test": self._generate_examples(NUM_TEST, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            image = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
            image[0, 0, 0] = i % 256
            yield f"{seed}-{i}", {
                "image": image,
                "report": _report(rng, i),
                "labels": rng.integers(-2, 2, size=(len(FINDINGS),)).astype(np.int8),
                "patient_id": f"p{i}",
                "study_id": f"s{i}",
                "view": "PA",
                "sex": "F",
                "age": np.int32(40 + i % 50),
            }


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = TinyCxr(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder.as_data_source()


@pytest.fixture(scope="module")
def tok(sources, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    tok = prepare_tokenizer(sources["train"], 200, path)
    assert path.is_file()
    assert prepare_tokenizer(sources["train"], 200, path).model_proto == tok.model_proto  # loads
    return tok


# input_size == stored size and no augmentation: image pixels pass through exactly, so the
# generation index stored in pixel [0, 0] identifies each row.
PLAIN = DataConfig(input_size=IMAGE_SIZE, max_text_len=32, augment=False)
AUG = DataConfig(input_size=24, max_text_len=32, augment=True)


def _ids(batch) -> np.ndarray:
    return np.rint((batch["image"][:, 0, 0, 0] * T.IMAGE_STD + T.IMAGE_MEAN) * 255).astype(int)


def _loader(sources, tok, cfg, seed=0, batch=20, **kw):
    return make_train_loader(
        sources["train"], tokenizer=tok, data_cfg=cfg, global_batch_size=batch, seed=seed, **kw
    )


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_transforms_dtypes_shapes_normalisation(sources, tok):
    record = sources["train"][3]
    out = T.apply_transforms(record, T.eval_transforms(tok, PLAIN))
    assert set(out) == {"image", "tokens", "labels"}
    assert out["image"].dtype == np.float32 and out["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 1)
    expected = (record["image"].astype(np.float32) / 255.0 - T.IMAGE_MEAN) / T.IMAGE_STD
    np.testing.assert_allclose(out["image"], expected, rtol=0, atol=1e-6)
    assert out["tokens"].dtype == np.int32 and out["tokens"].shape == (32,)
    np.testing.assert_array_equal(out["tokens"], tok.encode_batch([T.report_text(record)], 32)[0])
    assert out["labels"].dtype == np.int8
    np.testing.assert_array_equal(out["labels"], record["labels"])
    assert T.report_text(record).startswith("FINDINGS: record ") and "\n" not in T.report_text(record)

    resized = T.apply_transforms(record, T.eval_transforms(tok, dataclasses.replace(PLAIN, input_size=48)))
    assert resized["image"].shape == (48, 48, 1) and resized["image"].dtype == np.float32


@pytest.mark.parametrize("size", [16, 24, 48, 64])
def test_resize_matches_jax_image_resize(size):
    image = np.random.default_rng(0).random((IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32)
    ref = jax.image.resize(image, (size, size, 1), method="linear", antialias=True)
    np.testing.assert_allclose(T.resize_image(image, size), np.asarray(ref), atol=1e-5)
    assert T.resize_image(image, IMAGE_SIZE) is image  # no-op at the same size


def test_augmentation_reproducible_and_bounded(sources, tok):
    record = sources["train"][0]
    ts = T.train_transforms(tok, AUG)
    a = T.apply_transforms(record, ts, np.random.default_rng(7))
    b = T.apply_transforms(record, ts, np.random.default_rng(7))
    c = T.apply_transforms(record, ts, np.random.default_rng(8))
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"])
    assert a["image"].shape == (24, 24, 1) and a["image"].dtype == np.float32
    lo, hi = (0 - T.IMAGE_MEAN) / T.IMAGE_STD, (1 - T.IMAGE_MEAN) / T.IMAGE_STD
    assert a["image"].min() >= lo - 1e-6 and a["image"].max() <= hi + 1e-6
    np.testing.assert_array_equal(a["tokens"], c["tokens"])  # text is not augmented
    with pytest.raises(ValueError, match="random"):
        T.apply_transforms(record, ts)


def test_train_batches_shapes_and_determinism(sources, tok):
    a = _take(_loader(sources, tok, AUG, seed=1), 4)
    b = _take(_loader(sources, tok, AUG, seed=1), 4)
    c = _take(_loader(sources, tok, AUG, seed=2), 4)
    _assert_batches_equal(a, b)
    assert not np.array_equal(a[0]["tokens"], c[0]["tokens"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert a[0]["image"].shape == (20, 24, 24, 1) and a[0]["image"].dtype == np.float32
    assert a[0]["tokens"].shape == (20, 32) and a[0]["tokens"].dtype == np.int32
    assert a[0]["labels"].shape == (20, 7) and a[0]["labels"].dtype == np.int8


def test_epochs_cover_the_split_and_are_reshuffled(sources, tok):
    per_epoch = NUM_TRAIN // 20
    batches = _take(_loader(sources, tok, PLAIN, seed=3), 2 * per_epoch)
    ids = np.concatenate([_ids(b) for b in batches])
    e0, e1 = ids[:NUM_TRAIN], ids[NUM_TRAIN:]
    assert sorted(e0) == list(range(NUM_TRAIN)) and sorted(e1) == list(range(NUM_TRAIN))
    assert not np.array_equal(e0, e1)


def test_processes_get_disjoint_slices_of_each_global_batch(sources, tok):
    for cfg in (PLAIN, AUG):
        single = _take(_loader(sources, tok, cfg, seed=4, batch=16), 5)
        p0 = _take(_loader(sources, tok, cfg, seed=4, batch=16, process_index=0, process_count=2), 5)
        p1 = _take(_loader(sources, tok, cfg, seed=4, batch=16, process_index=1, process_count=2), 5)
        for g, a, b in zip(single, p0, p1):
            assert a["image"].shape[0] == b["image"].shape[0] == 8
            for k in g:  # process p holds rows [8p, 8p + 8) of the global batch
                np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k])
        ids0 = np.concatenate([_ids(b) for b in p0])
        ids1 = np.concatenate([_ids(b) for b in p1])
        if cfg is PLAIN:
            assert not set(ids0) & set(ids1)
    with pytest.raises(ValueError, match="multiple"):
        _loader(sources, tok, PLAIN, batch=15, process_index=0, process_count=2)


def test_exact_resume_from_iterator_state(sources, tok):
    it = _loader(sources, tok, AUG, seed=5)
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 12)  # crosses the epoch boundary (10 batches per epoch)
    fresh = _loader(sources, tok, AUG, seed=5)
    fresh.set_state(state)
    _assert_batches_equal(_take(fresh, 12), expected)


def _eval(sources, tok, **kw):
    return list(make_eval_batches(sources["test"], tokenizer=tok, data_cfg=PLAIN, **kw))


def test_eval_batches_cover_split_once_in_order(sources, tok):
    batches = _eval(sources, tok, batch_size=8)
    assert len(batches) == -(-NUM_TEST // 8)
    for b in batches:
        assert b["image"].shape == (8, IMAGE_SIZE, IMAGE_SIZE, 1) and b["mask"].dtype == bool
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == NUM_TEST and mask[:NUM_TEST].all()
    ids = np.concatenate([_ids(b) for b in batches])[mask]
    source_ids = [int(sources["test"][i]["image"][0, 0, 0]) for i in range(NUM_TEST)]
    np.testing.assert_array_equal(ids, source_ids)
    assert sorted(ids) == list(range(NUM_TEST))
    pad = batches[-1]
    assert (pad["tokens"][~pad["mask"]] == 0).all() and (pad["image"][~pad["mask"]] == 0).all()

    assert _eval(sources, tok, batch_size=8)[0]["tokens"].tolist() == batches[0]["tokens"].tolist()
    few = _eval(sources, tok, batch_size=8, max_examples=10)
    assert len(few) == 2 and sum(b["mask"].sum() for b in few) == 10

    # Two processes: same number of batches each, rows [4p, 4p + 4) of each global batch.
    p0 = _eval(sources, tok, batch_size=8, process_index=0, process_count=2)
    p1 = _eval(sources, tok, batch_size=8, process_index=1, process_count=2)
    assert len(p0) == len(p1) == len(batches)
    for g, a, b in zip(batches, p0, p1):
        for k in g:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k])


def _mesh_sharding():
    devices = np.array(jax.devices()[:4])
    mesh = jax.sharding.Mesh(devices, ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def test_to_global_batch(sources, tok):
    sharding = _mesh_sharding()
    host = _take(_loader(sources, tok, AUG, seed=6), 1)[0]
    glob = to_global_batch(host, sharding)
    for k, v in host.items():
        assert isinstance(glob[k], jax.Array) and glob[k].sharding == sharding
        assert glob[k].dtype == v.dtype
        np.testing.assert_array_equal(np.asarray(glob[k]), v)
    per_key = {k: sharding for k in host}
    np.testing.assert_array_equal(np.asarray(to_global_batch(host, per_key)["tokens"]), host["tokens"])
    with pytest.raises(KeyError):
        to_global_batch(host, {"image": sharding})


def test_prefetch_to_device_state_is_the_consumers_position(sources, tok):
    sharding = _mesh_sharding()
    reference = _take(_loader(sources, tok, AUG, seed=7), 8)
    it = prefetch_to_device(_loader(sources, tok, AUG, seed=7), 2, sharding)
    got = _take(it, 3)
    state = it.get_state()  # the host iterator has read ahead; the state must not have
    _assert_batches_equal([jax.tree.map(np.asarray, b) for b in got], reference[:3])
    resumed = prefetch_to_device(_loader(sources, tok, AUG, seed=7), 2, sharding)
    resumed.set_state(state)
    rest = [jax.tree.map(np.asarray, b) for b in _take(resumed, 5)]
    _assert_batches_equal(rest, reference[3:8])
    assert all(b["image"].sharding == sharding for b in got)


def test_orbax_checkpoint_manager_saves_iterator_state(sources, tok, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    sharding = _mesh_sharding()
    params = {"w": jax.numpy.arange(4.0)}

    it = prefetch_to_device(_loader(sources, tok, AUG, seed=8), 2, sharding)
    _take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(
            2,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(params), data=grain.checkpoint.CheckpointSave(it)
            ),
        )
        mngr.wait_until_finished()
    expected = [jax.tree.map(np.asarray, b) for b in _take(it, 3)]

    fresh = prefetch_to_device(_loader(sources, tok, AUG, seed=8), 2, sharding)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        restored = mngr.restore(
            mngr.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(params), data=grain.checkpoint.CheckpointRestore(fresh)
            ),
        )
    assert restored.data is fresh
    np.testing.assert_array_equal(np.asarray(restored.state["w"]), np.arange(4.0))
    _assert_batches_equal([jax.tree.map(np.asarray, b) for b in _take(fresh, 3)], expected)


@pytest.fixture
def absl_flags_parsed():
    """What the radfm CLI does before training: Grain's worker processes read absl flags."""
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    yield
    flags.FLAGS.unparse_flags()


def test_worker_processes_need_parsed_absl_flags(sources, tok):
    from absl import flags

    was_parsed = flags.FLAGS.is_parsed()  # e.g. by an in-process `radfm train` of another test
    flags.FLAGS.unparse_flags()
    try:
        with pytest.raises(ConfigError, match="mark_as_parsed"):
            _loader(sources, tok, dataclasses.replace(AUG, worker_count=2), seed=9)
    finally:
        if was_parsed:
            flags.FLAGS.mark_as_parsed()


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_resume(sources, tok, absl_flags_parsed):
    cfg = dataclasses.replace(AUG, worker_count=2)
    reference = _take(_loader(sources, tok, AUG, seed=9), 6)
    it = _loader(sources, tok, cfg, seed=9)
    try:
        _assert_batches_equal(_take(it, 3), reference[:3])
        state = it.get_state()
    finally:
        it.close()
    fresh = _loader(sources, tok, cfg, seed=9)
    try:
        fresh.set_state(state)
        _assert_batches_equal(_take(fresh, 3), reference[3:])
    finally:
        fresh.close()


REPORT = (
    "FINDINGS: PA chest radiograph. Small left pleural effusion. No pneumothorax.\n"
    "IMPRESSION: Left effusion."
)


def test_report_sentences_drop_section_headers():
    assert T.report_sentences(REPORT) == [
        "PA chest radiograph.", "Small left pleural effusion.", "No pneumothorax.", "Left effusion.",
    ]


def test_sentence_sampling_keeps_order_and_is_reproducible():
    sentences = T.report_sentences(REPORT)
    always = T.SampleReportSentences(probability=1.0)
    seen_lengths = set()
    for seed in range(40):
        text = always.random_map({"report": REPORT.encode()}, np.random.default_rng(seed))["report"]
        assert text == always.random_map({"report": REPORT.encode()}, np.random.default_rng(seed))["report"]
        kept = T.report_sentences(text)
        positions = [sentences.index(s) for s in kept]
        assert kept and positions == sorted(positions) and "FINDINGS" not in text
        seen_lengths.add(len(kept))
    assert seen_lengths == {1, 2, 3, 4}  # every subset size occurs, the whole report included
    never = T.SampleReportSentences(probability=0.0)
    assert never.random_map({"report": REPORT.encode()}, np.random.default_rng(0))["report"] == REPORT.encode()
