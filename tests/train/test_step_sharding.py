"""A train step of every objective on 8 fake devices (data=2, fsdp=4) equals the same step on
one device."""

import jax
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.schema import MeshConfig
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.loop import build_step
from radfm_jax.train.optimizer import make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings
from radfm_jax.train.tasks import make_task

VOCAB = 128


def _run(config, mesh_cfg: MeshConfig, devices, batches):
    mesh = make_mesh(mesh_cfg, devices)
    task = make_task(config, VOCAB, mesh)
    tx = make_optimizer(config.optim, config.total_steps)
    layout = plan_state(task.model_factory, tx, mesh, mesh_cfg.rules)
    state = init_train_state(layout, task.model_factory, tx)
    step = build_step(config, layout, tx, mesh, task).jit()
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
            "tokens": _reports(rng, config.batch_size, length),
            "labels": np.zeros((config.batch_size, 7), np.int8),
        }
        for _ in range(count)
    ]


def _reports(rng, batch, length):
    """Token rows of varied length: ids, EOS (2), then padding (0)."""
    tokens = rng.integers(3, VOCAB, (batch, length)).astype(np.int32)
    ends = rng.integers(length // 4, length, batch)
    positions = np.arange(length)[None]
    tokens[positions == ends[:, None]] = 2
    tokens[positions > ends[:, None]] = 0
    return tokens


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
    batches = _batches(config, 3)
    single_losses, single_params, _ = _run(config, MeshConfig(1, 1, 1, "fsdp"), jax.devices()[:1], batches)
    sharded_mesh = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
    sharded_losses, sharded_params, state = _run(config, sharded_mesh, jax.devices(), batches)

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
    batches = _batches(config, 2)
    mesh = MeshConfig(data=2, fsdp=1, tensor=1, rules="dp")
    full_losses, full_params, _ = _run(config, mesh, jax.devices()[:2], batches)
    micro_losses, micro_params, _ = _run(accumulated, mesh, jax.devices()[:2], batches)
    np.testing.assert_allclose(micro_losses, full_losses, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), micro_params, full_params)
