"""SigLIP's chunked (ring) loss across 8 devices equals the dense loss on the global batch."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.objectives import make_objective
from radfm_jax.objectives.siglip import siglip_loss, siglip_loss_of
from radfm_jax.objectives.siglip_chunked import chunked_siglip_loss

AXES = ("data", "fsdp")
B, D = 32, 16


def _mesh(data: int, fsdp: int) -> Mesh:
    devices = np.array(jax.devices()).reshape(data, fsdp, 1)
    return Mesh(devices, ("data", "fsdp", "tensor"))


def _embeddings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, D))
    y = 0.7 * x + rng.normal(size=(B, D))  # correlated pairs: accuracies are neither 0 nor 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


def _chunked(mesh: Mesh):
    def f(x, y, scale, bias):
        return chunked_siglip_loss(x, y, scale, bias, mesh=mesh, batch_axes=AXES)

    return f


@pytest.mark.parametrize("data,fsdp", [(2, 4), (8, 1)])
def test_chunked_equals_dense_value_metrics_and_gradients(data: int, fsdp: int) -> None:
    assert jax.device_count() == 8, "tests/conftest.py should set 8 fake CPU devices"
    mesh = _mesh(data, fsdp)
    x, y = _embeddings(data)
    split = NamedSharding(mesh, P(AXES))
    xs, ys = jax.device_put(x, split), jax.device_put(y, split)
    scale, bias = jnp.float32(7.0), jnp.float32(-3.0)

    loss, metrics = jax.jit(_chunked(mesh))(xs, ys, scale, bias)
    ref_loss, ref_metrics = siglip_loss(x, y, scale, bias)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    assert set(metrics) == set(ref_metrics)
    for key in ref_metrics:
        np.testing.assert_allclose(float(metrics[key]), float(ref_metrics[key]), rtol=1e-5, err_msg=key)
    assert 0.0 < float(ref_metrics["i2t_accuracy"]) < 1.0  # the accuracy check is not trivial

    def loss_of(f):
        return lambda *args: f(*args)[0]

    grad = jax.grad(loss_of(_chunked(mesh)), argnums=(0, 1, 2, 3))
    ref_grad = jax.grad(loss_of(siglip_loss), argnums=(0, 1, 2, 3))
    got, want = jax.jit(grad)(xs, ys, scale, bias), ref_grad(x, y, scale, bias)
    for name, g, r in zip(("image_emb", "text_emb", "scale", "bias"), got, want, strict=True):
        assert float(jnp.max(jnp.abs(r))) > 1e-3, name  # every gradient is really exercised
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-6, err_msg=name)


def test_no_device_builds_the_full_logit_matrix() -> None:
    mesh = _mesh(2, 4)
    x, y = _embeddings(0)
    local = B // 8

    def per_device_matrices(f) -> set[tuple[int, int]]:
        """Shapes of the 2D float32 arrays in the compiled per-device program."""
        grad = jax.grad(lambda *a: f(*a)[0], argnums=(0, 1, 2, 3))
        split = NamedSharding(mesh, P(AXES))
        lowered = jax.jit(grad, in_shardings=(split, split, None, None)).lower(x, y, 7.0, -3.0)
        hlo = lowered.compile().as_text()
        return {(int(a), int(b)) for a, b in re.findall(r"f32\[(\d+),(\d+)\]", hlo)}

    # The dense form gathers every text and holds a (B / devices, B) block of logits.
    assert (local, B) in per_device_matrices(siglip_loss)
    # The ring holds one local block of embeddings and one (b, b) block of logits at a time.
    assert per_device_matrices(_chunked(mesh)) == {(local, D), (local, local)}


def test_batch_must_split_over_devices() -> None:
    x = jnp.zeros((12, D))
    with pytest.raises(ValueError, match="multiple of 8"):
        chunked_siglip_loss(x, x, 1.0, 0.0, mesh=_mesh(2, 4), batch_axes=AXES)


def test_objective_from_config() -> None:
    mesh = _mesh(2, 4)

    def objective(*overrides: str):
        config = apply_overrides(ExperimentConfig(), ["objective.name=siglip", *overrides])
        return make_objective(config, 64, mesh)

    x, y = _embeddings(3)
    outputs = {"image_emb": x, "text_emb": y, "logit_scale": 10.0, "logit_bias": -10.0}
    # Unchunked, SigLIP's loss is the dense one: the same computation, no ring over the mesh.
    dense = objective().loss
    assert str(jax.make_jaxpr(dense)(outputs)) == str(jax.make_jaxpr(siglip_loss_of)(outputs))
    assert "shard_map" not in str(jax.make_jaxpr(dense)(outputs))
    chunked = objective("objective.chunked=true").loss
    assert "shard_map" in str(jax.make_jaxpr(chunked)(outputs))
    np.testing.assert_allclose(
        float(jax.jit(chunked)(outputs)[0]), float(siglip_loss(x, y, 10.0, -10.0)[0]), rtol=1e-5
    )
    with pytest.raises(ConfigError, match="objective.name=siglip"):
        apply_overrides(ExperimentConfig(), ["objective.name=clip", "objective.chunked=true"])
