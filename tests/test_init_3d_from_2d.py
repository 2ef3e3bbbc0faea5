"""config.init across dimensions: a vit3d run started from a 2D ViT run's checkpoint (inflated
along depth) or from a vit3d run at another volume size (position embedding resized), through
Experiment.init_state as training does."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config.loading import load_experiment
from radfm_jax.errors import ConfigError
from radfm_jax.models.towers import build_image_tower
from radfm_jax.train import checkpoint, loop
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.pretrained import fit_tower

TINY = ["optim.warmup_steps=1", "mesh.data=2", "mesh.fsdp=4"]
CT_SMOKE = "experiments/synthetic_ct/clip.py:smoke"


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
    """A 2-step 2D CLIP smoke run: ViT-Ti patch 8, width 32, depth 2, mean pooling, 32 px."""
    os.environ.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    workdir = tmp_path_factory.mktemp("clip2d") / "run"
    loop.train(load_experiment("experiments/synthetic_cxr/clip.py:smoke",
                               ["total_steps=2", "eval_every=0", "checkpoint_every=2", *TINY]), workdir)
    return workdir


def _image_params(exp: Experiment, state) -> dict:
    return jax.tree.map(np.asarray, jax.device_get(state.params[exp.objective.image_tower_path[0]]))


def _tower(config, params: dict, shape, channels: int) -> nnx.Module:
    module = build_image_tower(config.model, shape, nnx.Rngs(1), channels=channels)
    nnx.update(module, nnx.State(params))
    return module


@pytest.mark.parametrize("mode", ["average", "centre"])
def test_a_vit3d_run_starts_from_a_2d_run_and_sees_identical_slices_as_the_2d_model(run_2d, mode):
    config_3d = load_experiment(CT_SMOKE, ["data.windows=lung", f"init.workdir={run_2d}", f"init.inflate={mode}",
                                           *TINY])
    exp_3d = Experiment.plan(config_3d, config_3d.data.vocab_size)
    tower_3d = _image_params(exp_3d, exp_3d.init_state())

    config_2d = load_experiment("experiments/synthetic_cxr/clip.py:smoke", TINY)
    exp_2d = Experiment.plan(config_2d, config_2d.data.vocab_size)
    manager = checkpoint.make_manager(run_2d, keep=3)
    try:
        saved, _ = checkpoint.restore(manager, 2, exp_2d.layout.abstract, exp_2d.layout.shardings)
    finally:
        manager.close()
    tower_2d = _image_params(exp_2d, saved)

    slice_ = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype(np.float32)
    volume = np.repeat(slice_[:, None], 16, axis=1)  # (B, D, H, W, 1): 16 identical slices
    features_2d = _tower(config_2d, tower_2d, (32, 32), 1)(slice_)
    features_3d = _tower(config_3d, tower_3d, (16, 32, 32), 1)(volume)
    np.testing.assert_allclose(features_3d, features_2d, rtol=1e-4, atol=1e-5)
    kernel_2d = tower_2d["patch_embed"]["kernel"]
    slices = tower_3d["patch_embed"]["kernel"].reshape(4, *kernel_2d.shape)  # tubelet depth 4
    expected = [kernel_2d / 4] * 4 if mode == "average" else [0 * kernel_2d] * 2 + [kernel_2d] + [0 * kernel_2d]
    np.testing.assert_allclose(slices, np.stack(expected), rtol=1e-6, atol=1e-7)


def test_a_2d_run_with_other_channels_is_refused_naming_the_fields(run_2d):
    config = load_experiment(CT_SMOKE, [f"init.workdir={run_2d}", *TINY])  # two windows: two channels
    exp = Experiment.plan(config, config.data.vocab_size)
    with pytest.raises(ConfigError, match=r"cannot inflate the 2D ViT.*data\.windows"):
        exp.init_state()


def test_a_vit3d_tower_fits_another_volume_size():
    source = load_experiment(CT_SMOKE, [])
    target = dataclasses.replace(source, data=dataclasses.replace(source.data, input_size=64))  # (32, 64, 64)
    module = build_image_tower(source.model, (16, 32, 32), nnx.Rngs(0), channels=2)
    tower = jax.tree.map(np.asarray, nnx.state(module, nnx.Param).to_pure_dict())
    fitted = fit_tower(tower, source, target)
    assert tower["pos_emb"].shape[:3] == (4, 4, 4) and fitted["pos_emb"].shape[:3] == (8, 8, 8)
    np.testing.assert_array_equal(fitted["patch_embed"]["kernel"], tower["patch_embed"]["kernel"])
    # The grafted tower builds and runs at the new size.
    out = _tower(target, fitted, (32, 64, 64), 2)(np.zeros((1, 32, 64, 64, 2), np.float32))
    assert out.shape == (1, 32) and np.all(np.isfinite(out))
