"""GradCache: contrastive gradients in microbatches equal the plain full-batch gradients."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from radfm_jax.config.schema import MeshConfig, ObjectiveConfig
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.objectives.clip import ClipConfig
from radfm_jax.objectives.siglip import SiglipConfig
from radfm_jax.parallel.mesh import BATCH_AXES
from radfm_jax.train.grad_cache import grad_cache_value_and_grad
from adam_params import assert_params_close

MESH = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
BATCH, MICRO = 32, 4
TEMPERATURE = {"model.init_temperature": 5.0, "model.init_bias": -2.0}
OBJECTIVES = {
    "clip": ClipConfig(),
    "siglip": SiglipConfig(),
    "siglip_chunked": SiglipConfig(chunked=True),
}


def batch(exp, seed: int = 0) -> dict[str, jax.Array]:
    """The tolerances below were set on this batch: on others (e.g. exp.random_batch(0)) a
    gradient can fall within rounding of 0, where Adam's first step may differ by more."""
    rng = np.random.default_rng(seed)
    size, length = exp.config.data.input_size, exp.config.data.max_text_len
    tokens = rng.integers(1, exp.vocab_size, (BATCH, length)).astype(np.int32)
    tokens[:, 6:] = 0  # some padding
    image = rng.normal(size=(BATCH, size, size, 1)).astype(np.float32)
    return to_global_batch({"image": image, "tokens": tokens}, exp.batch_shardings())


@pytest.fixture(scope="module")
def setup(toy_experiment):
    """One experiment per objective (the same two-tower model), its initial state and a batch."""
    experiments = {name: toy_experiment(MESH, batch_size=BATCH, objective=objective, changes=TEMPERATURE)
                   for name, objective in OBJECTIVES.items()}
    clip = experiments["clip"]
    return experiments, clip.init_state(), batch(clip)


def _assert_trees_close(a, b, **tol) -> None:
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol), a, b)


@pytest.mark.parametrize("objective", ["clip", "siglip"])
def test_gradients_equal_full_batch(setup, objective: str) -> None:
    experiments, state, global_batch = setup
    exp = experiments[objective]
    mesh, loss_fn = exp.mesh, exp.objective.loss

    def forward(params, b):
        return exp.objective.forward(exp.layout.model.merge(params), b, state.extra)

    full = jax.value_and_grad(lambda p, b: loss_fn(forward(p, b)), has_aux=True)
    cached = grad_cache_value_and_grad(
        forward, loss_fn, MICRO, microbatch_sharding=NamedSharding(mesh, P(None, BATCH_AXES))
    )
    (loss, aux), grads = jax.jit(cached)(state.params, global_batch)
    (ref_loss, ref_aux), ref_grads = jax.jit(full)(state.params, global_batch)

    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    _assert_trees_close(aux, ref_aux, rtol=1e-5)
    _assert_trees_close(grads, ref_grads, rtol=2e-4, atol=1e-6)
    # The temperature (and, for SigLIP, the bias) learn through the shared-scalar path.
    assert abs(float(ref_grads["log_logit_scale"])) > 1e-4
    if objective == "siglip":
        assert abs(float(ref_grads["logit_bias"])) > 1e-4
    else:
        assert float(grads["logit_bias"]) == 0.0


def test_train_step_with_grad_cache_and_chunked_siglip_equals_full_batch_step(setup, toy_experiment) -> None:
    objective = "siglip_chunked"
    experiments, state, global_batch = setup
    learning_rate = experiments[objective].config.optim.learning_rate

    def one_step(objective_cfg: ObjectiveConfig, steps: int):
        exp = toy_experiment(MESH, batch_size=BATCH, objective=objective_cfg,
                             changes={**TEMPERATURE, "optim.grad_accum_steps": steps})
        fresh = jax.tree.map(lambda x: x.copy(), state)  # the step donates its input
        new_state, metrics = exp.train_step().jit()(fresh, global_batch)
        return jax.device_get(new_state.params), jax.device_get(metrics)

    # The reference is the plain (unchunked, one-pass) objective on the full batch.
    reference = OBJECTIVES[objective.removesuffix("_chunked")]
    params, metrics = one_step(OBJECTIVES[objective], MICRO)
    ref_params, ref_metrics = one_step(reference, 1)
    assert set(metrics) == set(ref_metrics)
    for key in ref_metrics:  # loss, grad_norm, accuracies, ...
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-4, err_msg=key)
    # Adam's first update is about lr * sign(grad): where a gradient is within rounding of 0
    # its sign may differ (adam_params.py); the rest agree to 1% of the learning rate.
    assert_params_close(params, ref_params, learning_rate=learning_rate, steps=1, rtol=1e-4, atol=learning_rate / 100)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), params, jax.device_get(state.params))
    assert all(jax.tree.leaves(changed["image"]))  # the step really moved the parameters
