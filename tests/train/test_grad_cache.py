"""GradCache: contrastive gradients in microbatches equal the plain full-batch gradients."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from radfm_jax.config.schema import (
    ImageTowerConfig,
    MeshConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    TextTowerConfig,
)
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.objectives import contrastive_objective
from radfm_jax.parallel.mesh import BATCH_AXES, make_mesh
from radfm_jax.train.grad_cache import grad_cache_value_and_grad
from radfm_jax.train.optimizer import learning_rate_schedule, make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings, build_train_step

MODEL = ModelConfig(
    image=ImageTowerConfig(patch_size=8, width=32, depth=1, heads=2, pool="mean"),
    text=TextTowerConfig(width=32, depth=1, heads=2, pool="mean"),
    embed_dim=16,
    scan_layers=False,  # tiny and unrolled: the fastest to compile
    init_temperature=5.0,
    init_bias=-2.0,
)
OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=0)
IMAGE, TEXT_LEN, VOCAB, BATCH, MICRO = 16, 8, 64, 32, 4
OBJECTIVES = {
    "clip": ObjectiveConfig("clip"),
    "siglip": ObjectiveConfig("siglip"),
    "siglip_chunked": ObjectiveConfig("siglip", chunked=True),
}


def factory() -> TwoTower:
    return TwoTower(MODEL, VOCAB, TEXT_LEN, IMAGE, rngs=nnx.Rngs(0))


def batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, (BATCH, TEXT_LEN)).astype(np.int32)
    tokens[:, 6:] = 0  # some padding
    return {
        "image": rng.normal(size=(BATCH, IMAGE, IMAGE, 1)).astype(np.float32),
        "tokens": tokens,
        "labels": np.zeros((BATCH, 7), np.int8),
    }


@pytest.fixture(scope="module")
def setup():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp"))
    tx = make_optimizer(OPTIM, 10)
    layout = plan_state(factory, tx, mesh, "fsdp")
    state = init_train_state(layout, factory, tx)
    return mesh, tx, layout, state, to_global_batch(batch(), batch_shardings(mesh))


def _assert_trees_close(a, b, **tol) -> None:
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol), a, b)


@pytest.mark.parametrize("objective", ["clip", "siglip"])
def test_gradients_equal_full_batch(setup, objective: str) -> None:
    mesh, _, layout, state, global_batch = setup
    loss_fn = contrastive_objective(OBJECTIVES[objective], mesh, BATCH_AXES)

    def forward(params, b):
        return layout.model.merge(params)(b["image"], b["tokens"])

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


def test_train_step_with_grad_cache_and_chunked_siglip_equals_full_batch_step(setup) -> None:
    objective = "siglip_chunked"
    mesh, tx, layout, state, global_batch = setup
    schedule = learning_rate_schedule(OPTIM, 10)

    def one_step(objective_cfg: ObjectiveConfig, steps: int):
        loss_fn = contrastive_objective(objective_cfg, mesh, BATCH_AXES)
        step = build_train_step(layout, tx, loss_fn, schedule, mesh, grad_accum_steps=steps)
        fresh = jax.tree.map(lambda x: x.copy(), state)  # the step donates its input
        new_state, metrics = step.jit()(fresh, global_batch)
        return jax.device_get(new_state.params), jax.device_get(metrics)

    # The reference is the plain (unchunked, one-pass) objective on the full batch.
    reference = OBJECTIVES[objective.removesuffix("_chunked")]
    params, metrics = one_step(OBJECTIVES[objective], MICRO)
    ref_params, ref_metrics = one_step(reference, 1)
    assert set(metrics) == set(ref_metrics)
    for key in ref_metrics:  # loss, grad_norm, accuracies, ...
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-4, err_msg=key)
    # Adam's first update is about lr * sign(grad): where a gradient is within rounding of 0
    # its sign may differ, so parameters are compared to 1% of the learning rate.
    _assert_trees_close(params, ref_params, rtol=1e-4, atol=OPTIM.learning_rate / 100)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), params, jax.device_get(state.params))
    assert all(jax.tree.leaves(changed["image"]))  # the step really moved the parameters
