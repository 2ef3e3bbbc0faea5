"""A train step of every objective on 8 fake devices (data=2, fsdp=4) equals the same step on
one device."""

import jax
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import MeshConfig
from radfm_jax.train.experiment import Experiment

VOCAB = 128


def _run(config, mesh_cfg: MeshConfig, devices, seeds):
    """Losses, final parameters and state after a step on the batch of each seed (the same
    random batches whatever the mesh)."""
    exp = Experiment.plan(with_fields(config, {"mesh": mesh_cfg}), VOCAB, devices=devices)
    state = exp.init_state()
    step = exp.train_step().jit()
    losses = []
    for seed in seeds:
        state, metrics = step(state, exp.random_batch(seed))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), state


@pytest.mark.parametrize("experiment, overrides", [
    ("clip", []), ("siglip", []), ("mae", []),
    ("captioner", ["objective.parallel_fraction=0.5"]),  # half CapPa rows, half teacher-forced
    ("coca", []),
])
def test_sharded_step_equals_single_device(experiment, overrides):
    config = load_experiment(
        f"experiments/synthetic_cxr/{experiment}.py:smoke",
        ["optim.warmup_steps=1", "optim.learning_rate=1e-2", *overrides],
    )
    seeds = range(1, 4)
    single_losses, single_params, _ = _run(config, MeshConfig(1, 1, 1, "fsdp"), jax.devices()[:1], seeds)
    sharded_mesh = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
    sharded_losses, sharded_params, state = _run(config, sharded_mesh, jax.devices(), seeds)

    # The parameters really are split over the fsdp axis.
    image_tower = state.params["image"] if "image" in state.params else state.params["encoder"]  # MAE
    kernel = image_tower["patch_embed"]["kernel"]
    assert "fsdp" in str(kernel.sharding.spec)
    assert len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.size == kernel.size // 4

    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5, atol=1e-6)
    assert single_losses[-1] != single_losses[0]  # the steps did update something
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), sharded_params, single_params)


@pytest.mark.parametrize("experiment, overrides", [
    ("mae", []), ("captioner", ["objective.parallel_fraction=0.5"]), ("coca", []),
])
def test_accumulated_step_equals_full_batch(experiment, overrides):
    """Microbatches see the random inputs (MAE masks, CapPa rows) the full batch draws, and
    CoCa's contrastive term goes through GradCache: two microbatches equal one pass."""
    base = [f"experiments/synthetic_cxr/{experiment}.py:smoke",
            ["optim.warmup_steps=1", "optim.learning_rate=1e-2", *overrides]]
    config = load_experiment(*base)
    accumulated = load_experiment(base[0], [*base[1], "optim.grad_accum_steps=2"])
    seeds = range(1, 3)
    mesh = MeshConfig(data=2, fsdp=1, tensor=1, rules="dp")
    full_losses, full_params, _ = _run(config, mesh, jax.devices()[:2], seeds)
    micro_losses, micro_params, _ = _run(accumulated, mesh, jax.devices()[:2], seeds)
    np.testing.assert_allclose(micro_losses, full_losses, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), micro_params, full_params)
