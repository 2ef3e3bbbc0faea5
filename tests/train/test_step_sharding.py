"""A train step on 8 fake devices (data=2, fsdp=4) equals the same step on one device."""

import jax
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.schema import MeshConfig
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.objectives import CONTRASTIVE_OBJECTIVES
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.optimizer import learning_rate_schedule, make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings, build_train_step

VOCAB = 128


def _run(config, mesh_cfg: MeshConfig, devices, batches):
    mesh = make_mesh(mesh_cfg, devices)

    def factory():
        return TwoTower(config.model, vocab_size=VOCAB, max_text_len=config.data.max_text_len,
                        image_size=config.data.input_size, rngs=nnx.Rngs(config.seed))

    tx = make_optimizer(config.optim, config.total_steps)
    layout = plan_state(factory, tx, mesh, mesh_cfg.rules)
    state = init_train_state(layout, factory, tx)
    step = build_train_step(layout, tx, CONTRASTIVE_OBJECTIVES[config.objective.name],
                            learning_rate_schedule(config.optim, config.total_steps), mesh).jit()
    losses = []
    for batch in batches:
        state, metrics = step(state, to_global_batch(batch, batch_shardings(mesh)))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), state


def _batches(config, count):
    rng = np.random.default_rng(1)
    size, length = config.data.input_size, config.data.max_text_len
    return [
        {
            "image": rng.normal(size=(config.batch_size, size, size, 1)).astype(np.float32),
            "tokens": rng.integers(1, VOCAB, (config.batch_size, length)).astype(np.int32),
            "labels": np.zeros((config.batch_size, 7), np.int8),
        }
        for _ in range(count)
    ]


@pytest.mark.parametrize("objective", ["clip", "siglip"])
def test_sharded_step_equals_single_device(objective):
    config = load_experiment(
        f"experiments/synthetic_cxr/{objective}.py:smoke",
        ["optim.warmup_steps=1", "optim.learning_rate=1e-2"],
    )
    batches = _batches(config, 3)
    single_losses, single_params, _ = _run(config, MeshConfig(1, 1, 1, "fsdp"), jax.devices()[:1], batches)
    sharded_mesh = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
    sharded_losses, sharded_params, state = _run(config, sharded_mesh, jax.devices(), batches)

    # The parameters really are split over the fsdp axis.
    kernel = state.params["image"]["patch_embed"]["kernel"]
    assert "fsdp" in str(kernel.sharding.spec)
    assert len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.size == kernel.size // 4

    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5, atol=1e-6)
    assert single_losses[-1] != single_losses[0]  # the steps did update something
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), sharded_params, single_params)
