"""Gradient accumulation: a per-example mean loss in microbatches equals the full batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from radfm_jax.config.schema import MeshConfig
from radfm_jax.errors import ConfigError
from radfm_jax.objectives.clip import Clip
from radfm_jax.train.accumulate import (
    check_microbatching,
    merge_microbatches,
    split_microbatches,
)

MESH = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
BATCH = 32


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


class Alignment(Clip):
    """CLIP's towers trained with `alignment_loss`: no example is another's negative, so
    gradient accumulation averages microbatch gradients instead of running GradCache."""

    batch_coupled = False

    def loss(self, outputs):
        return alignment_loss(outputs)


def test_accumulated_step_equals_full_batch_step(toy_experiment) -> None:
    exp = toy_experiment(MESH, batch_size=BATCH)
    state = exp.init_state()
    batch = exp.random_batch(0)

    def one_step(steps: int):
        planned = toy_experiment(MESH, batch_size=BATCH, changes={"optim.grad_accum_steps": steps})
        planned = dataclasses.replace(planned, objective=Alignment(planned.config, planned.vocab_size, planned.mesh))
        fresh = jax.tree.map(lambda x: x.copy(), state)  # the step donates its input
        new_state, metrics = planned.train_step().jit()(fresh, batch)
        return jax.device_get(new_state.params), jax.device_get(metrics)

    params, metrics = one_step(4)
    ref_params, ref_metrics = one_step(1)
    for key in ("loss", "grad_norm", "cosine"):
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-5, err_msg=key)
    # Adam's first update is about lr * sign(grad): compare to 1% of the learning rate.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=exp.config.optim.learning_rate / 100),
        params,
        ref_params,
    )
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), params, jax.device_get(state.params))
    assert all(jax.tree.leaves(moved["text"]))
