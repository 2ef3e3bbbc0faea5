"""Gradient accumulation: a per-example mean loss in microbatches equals the full batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config.schema import (
    ImageTowerConfig,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    TextTowerConfig,
)
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.errors import ConfigError
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.accumulate import (
    check_microbatching,
    merge_microbatches,
    split_microbatches,
)
from radfm_jax.train.optimizer import learning_rate_schedule, make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings, build_train_step

MODEL = ModelConfig(
    image=ImageTowerConfig(patch_size=8, width=32, depth=1, heads=2, pool="mean"),
    text=TextTowerConfig(width=32, depth=1, heads=2, pool="mean"),
    embed_dim=16,
    scan_layers=False,
)
OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=0)
IMAGE, TEXT_LEN, VOCAB, BATCH = 16, 8, 64, 32


def test_microbatch_i_holds_every_steps_th_example() -> None:
    batch = {"x": jnp.arange(8), "y": jnp.arange(16).reshape(8, 2)}
    micro = split_microbatches(batch, 4)
    np.testing.assert_array_equal(micro["x"], [[0, 4], [1, 5], [2, 6], [3, 7]])
    np.testing.assert_array_equal(micro["y"][1], [[2, 3], [10, 11]])
    jax.tree.map(np.testing.assert_array_equal, merge_microbatches(micro), batch)


def test_microbatches_must_split_over_devices() -> None:
    check_microbatching(32, 4, 8)
    with pytest.raises(ConfigError, match="multiple of 24"):
        check_microbatching(32, 3, 8)
    with pytest.raises(ConfigError, match="grad_accum_steps must be >= 1"):
        check_microbatching(32, 0, 8)


def alignment_loss(outputs: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A per-example loss on the two-tower outputs (no negatives): each image-report pair's
    scaled cosine distance, plus a bias penalty, averaged over the batch."""
    cosine = jnp.sum(outputs["image_emb"] * outputs["text_emb"], axis=-1)
    per_example = outputs["logit_scale"] * (1.0 - cosine) + 0.1 * outputs["logit_bias"] ** 2
    return jnp.mean(per_example), {"cosine": jnp.mean(cosine)}


def test_accumulated_step_equals_full_batch_step() -> None:
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp"))

    def factory() -> TwoTower:
        return TwoTower(MODEL, VOCAB, TEXT_LEN, IMAGE, rngs=nnx.Rngs(0))

    tx = make_optimizer(OPTIM, 10)
    layout = plan_state(factory, tx, mesh, "fsdp")
    state = init_train_state(layout, factory, tx)
    rng = np.random.default_rng(0)
    host_batch = {
        "image": rng.normal(size=(BATCH, IMAGE, IMAGE, 1)).astype(np.float32),
        "tokens": rng.integers(1, VOCAB, (BATCH, TEXT_LEN)).astype(np.int32),
        "labels": np.zeros((BATCH, 7), np.int8),
    }
    batch = to_global_batch(host_batch, batch_shardings(mesh))
    schedule = learning_rate_schedule(OPTIM, 10)

    def one_step(steps: int):
        step = build_train_step(
            layout, tx, alignment_loss, schedule, mesh, grad_accum_steps=steps, batch_coupled_loss=False
        )
        fresh = jax.tree.map(lambda x: x.copy(), state)  # the step donates its input
        new_state, metrics = step.jit()(fresh, batch)
        return jax.device_get(new_state.params), jax.device_get(metrics)

    params, metrics = one_step(4)
    ref_params, ref_metrics = one_step(1)
    for key in ("loss", "grad_norm", "cosine"):
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-5, err_msg=key)
    # Adam's first update is about lr * sign(grad): compare to 1% of the learning rate.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=OPTIM.learning_rate / 100),
        params,
        ref_params,
    )
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), params, jax.device_get(state.params))
    assert all(jax.tree.leaves(moved["text"]))
