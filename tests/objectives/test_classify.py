"""Fine-tuning (objectives/classify.py): the label loss against NumPy, what each mode trains, the
layer-wise learning-rate decay, starting from a pretraining run's tower, label fractions."""

import os

import jax
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.data.datasets import open_prepared
from radfm_jax.errors import ConfigError
from radfm_jax.objectives.classify import label_loss
from radfm_jax.train import loop
from radfm_jax.train.experiment import Experiment

FINETUNE = "experiments/synthetic_cxr/finetune.py"
TINY = ["optim.warmup_steps=1", "mesh.data=2", "mesh.fsdp=4"]


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory):
    os.environ.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))


def _naive_loss(logits, labels, pos_weight, gamma):
    per_example = []
    for row_logits, row_labels in zip(logits, labels):
        terms = []
        for z, y, w in zip(row_logits, row_labels, pos_weight):
            if y == -1:
                continue
            p = 1 / (1 + np.exp(-z))
            t = 1.0 if y == 1 else 0.0
            ce = -(w * t * np.log(p) + (1 - t) * np.log(1 - p))
            p_t = p if t else 1 - p
            terms.append(ce * (1 - p_t) ** gamma)
        if terms:
            per_example.append(np.mean(terms))
    return np.mean(per_example)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_label_loss_matches_a_numpy_loop(gamma):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)) * 2
    labels = rng.choice([1, 0, -1, -2], size=(6, 4))
    labels[2] = -1  # an example with no known label does not count
    pos_weight = np.array([1.0, 3.0, 0.5, 2.0])
    loss, metrics = label_loss(logits, labels, pos_weight=pos_weight, focal_gamma=gamma)
    np.testing.assert_allclose(float(loss), _naive_loss(logits, labels, pos_weight, gamma), rtol=1e-5)
    assert 0 <= float(metrics["label_accuracy"]) <= 1


def _plan(mode: str, *overrides: str) -> Experiment:
    return Experiment.plan(load_experiment(f"{FINETUNE}:{mode}-smoke", [*TINY, *overrides]))


def _trains(exp: Experiment) -> dict[str, bool]:
    flags = exp.objective.trainable(exp.layout.abstract.params)
    return {jax.tree_util.keystr(path): keep for path, keep in jax.tree_util.tree_flatten_with_path(flags)[0]}


def test_each_mode_trains_what_it_says():
    linear, lora, partial, full = (_trains(_plan(mode)) for mode in ("linear", "lora", "partial", "full"))
    assert {k for k, v in linear.items() if v} == {"['head_bias']", "['head_kernel']"}
    assert {k for k, v in lora.items() if v} == {k for k in lora if "lora" in k or "head_" in k}
    assert any("lora" in k for k in lora) and not any("lora" in k for k in full)
    frozen_in_partial = {k for k, v in partial.items() if not v}
    assert frozen_in_partial == {k for k in partial if any(e in k for e in ("patch_embed", "pos_emb"))}
    assert all(full.values())


def test_partial_freezes_the_early_blocks_of_a_scanned_stack_and_decays_the_rest():
    exp = _plan("partial", "objective.partial_blocks=1", "objective.layer_decay=0.5")
    scales = exp.objective.update_scale(exp.layout.abstract.params)
    kernel = scales["image"]["encoder"]["layers"]["attn"]["query"]["kernel"]
    assert kernel.shape == (2, 1, 1, 1)  # the smoke tower's 2 scanned blocks
    np.testing.assert_array_equal(kernel.ravel(), [0.0, 0.5])  # block 0 frozen, block 1 at decay^(2-1)
    assert scales["image"]["pos_emb"] == 0.5 ** 3 and scales["head_kernel"] == 1.0


def test_layer_decay_of_unrolled_blocks():
    exp = _plan("full", "model.scan_layers=false", "objective.layer_decay=0.5")
    scales = exp.objective.update_scale(exp.layout.abstract.params)
    blocks = scales["image"]["encoder"]["layers"]
    assert [blocks[i]["mlp"]["fc1"]["kernel"] for i in (0, 1)] == [0.25, 0.5]
    assert scales["image"]["norm"]["scale"] == 1.0 and scales["image"]["patch_embed"]["kernel"] == 0.125


@pytest.mark.parametrize("mode", ["linear", "lora", "partial"])
def test_frozen_parameters_do_not_move_and_have_no_optimizer_state(mode):
    exp = _plan(mode, "objective.partial_blocks=1")
    state = exp.init_state()
    before = jax.device_get(state.params)
    step = exp.train_step().jit()
    for seed in range(3):
        state, metrics = step(state, exp.random_batch(seed))
    after = jax.device_get(state.params)
    flags = exp.objective.trainable(before)
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
    for (path, keep), changed in zip(jax.tree_util.tree_flatten_with_path(flags)[0], jax.tree.leaves(moved)):
        if not keep:
            assert not changed, jax.tree_util.keystr(path)
    assert moved["head_kernel"]
    if mode == "partial":  # the stack moved in its last block only
        query = [np.asarray(x["image"]["encoder"]["layers"]["attn"]["query"]["kernel"]) for x in (before, after)]
        assert np.array_equal(query[0][0], query[1][0]) and not np.array_equal(query[0][1], query[1][1])
    state_size = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
    trained = sum(np.size(p) for p, keep in zip(jax.tree.leaves(before), jax.tree.leaves(flags)) if keep)
    assert state_size < 2 * trained + 100  # Adam's two moments of what trains, and counters


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A CLIP smoke run of 2 steps: the tower the smoke fine-tuning configs start from."""
    workdir = tmp_path_factory.mktemp("clip") / "run"
    loop.train(load_experiment("experiments/synthetic_cxr/clip.py:smoke",
                               ["total_steps=2", "eval_every=0", "checkpoint_every=2", *TINY]), workdir)
    return workdir


def test_fine_tuning_starts_from_the_pretrained_tower(pretrained):
    from radfm_jax.train import checkpoint

    exp = Experiment.plan(load_experiment(f"{FINETUNE}:lora-smoke", [*TINY, f"init.workdir={pretrained}"]))
    state = exp.init_state()
    source = Experiment.plan(load_experiment("experiments/synthetic_cxr/clip.py:smoke", TINY))
    manager = checkpoint.make_manager(pretrained, keep=3)
    try:
        saved, _ = checkpoint.restore(manager, 2, source.layout.abstract, source.layout.shardings)
    finally:
        manager.close()
    tower = jax.device_get(state.params["image"])
    saved_tower = jax.device_get(saved.params["image"])
    for path, leaf in jax.tree_util.tree_flatten_with_path(saved_tower)[0]:
        node = tower
        for key in path:
            node = node[key.key]
        np.testing.assert_array_equal(node, leaf, err_msg=jax.tree_util.keystr(path))
    assert not np.any(jax.device_get(state.params["head_kernel"]))


def test_a_tower_that_does_not_match_the_checkpoint_is_named(pretrained):
    exp = Experiment.plan(load_experiment(f"{FINETUNE}:full-smoke",
                                          [*TINY, f"init.workdir={pretrained}", "model.image.width=48"]))
    with pytest.raises(ConfigError, match="does not match") as error:
        exp.init_state()
    message = str(error.value)
    assert "encoder/layers/attn/key/kernel: pretrained (2, 32, 2, 16), this config needs (2, 48, 2, 24)" in message
    assert "as in the pretraining run" in message


def test_init_workdir_must_be_a_workdir(tmp_path):
    with pytest.raises(ConfigError, match="not a radfm workdir"):
        load_experiment(f"{FINETUNE}:full-smoke", [f"init.workdir={tmp_path}"])


def test_label_fractions_nest_by_patient_and_a_class_without_positives_is_refused():
    config = load_experiment(f"{FINETUNE}:full-smoke", TINY)
    patients = {}
    for fraction in (0.1, 0.5, 1.0):
        data = open_prepared(apply_overrides(config, [f"data.train_fraction={fraction}"]).data)
        train = data.sources["train"]
        patients[fraction] = {train[i]["patient_id"] for i in range(len(train))}
    assert patients[0.1] < patients[0.5] < patients[1.0]
    other = {data.sources[split][i]["patient_id"] for split in ("val", "test") for i in range(len(data.sources[split]))}
    assert not patients[1.0] & other
    tiny = apply_overrides(config, ["data.train_fraction=0.005"])
    with pytest.raises(ConfigError, match="no positive example of"):
        Experiment.build(tiny)


def test_graft_matches_an_unrolled_stack_by_name():
    from radfm_jax.train.pretrained import graft_tower

    # A model's unrolled blocks are int keys; a checkpoint stores them as strings.
    params = {"head": np.zeros(2), "image": {"layers": {0: {"w": np.zeros(3)}, 1: {"w": np.zeros(3)}},
                                             "lora": {"a": np.zeros(1)}}}
    pretrained = {"layers": {"0": {"w": np.ones(3)}, "1": {"w": 2 * np.ones(3)}}}
    merged = graft_tower(params, ("image",), pretrained, "test")
    assert list(merged["image"]["layers"]) == [0, 1]
    np.testing.assert_array_equal(merged["image"]["layers"][1]["w"], 2 * np.ones(3))
    np.testing.assert_array_equal(merged["image"]["lora"]["a"], np.zeros(1))  # added on top: kept
    with pytest.raises(ConfigError, match="layers/2/w: in the pretrained tower"):
        graft_tower(params, ("image",), {**pretrained, "layers": {**pretrained["layers"], "2": {"w": np.ones(3)}}},
                    "test")
