"""Contrastive losses vs naive NumPy loops, and sharded (global-negatives) vs unsharded."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives import OBJECTIVES, make_objective
from radfm_jax.objectives.clip import Clip, clip_loss
from radfm_jax.objectives.siglip import siglip_loss


# ---------------------------------------------------------------- naive references (float64)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum(float(a[d]) * float(b[d]) for d in range(a.shape[0])))


def _logits(x: np.ndarray, y: np.ndarray, scale: float, bias: float = 0.0) -> list[list[float]]:
    n = x.shape[0]
    return [[scale * _dot(x[i], y[j]) + bias for j in range(n)] for i in range(n)]


def _log_softmax_at(row: list[float], k: int) -> float:
    m = max(row)
    return row[k] - m - math.log(sum(math.exp(v - m) for v in row))


def naive_clip(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    n = x.shape[0]
    z = _logits(x, y, scale)
    i2t = sum(-_log_softmax_at(z[i], i) for i in range(n)) / n
    t2i = sum(-_log_softmax_at([z[i][j] for i in range(n)], j) for j in range(n)) / n
    return 0.5 * (i2t + t2i)


def _log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


def naive_siglip(x: np.ndarray, y: np.ndarray, scale: float, bias: float) -> float:
    n = x.shape[0]
    z = _logits(x, y, scale, bias)
    total = 0.0
    for i in range(n):
        for j in range(n):
            label = 1.0 if i == j else -1.0
            total += -_log_sigmoid(label * z[i][j])
    return total / n


def _embeddings(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = 0.5 * x + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


# ---------------------------------------------------------------- value vs reference
@pytest.mark.parametrize("seed,n,d,scale", [(0, 5, 8, 1.0), (1, 12, 16, 14.3), (2, 7, 4, 100.0)])
def test_clip_matches_naive(seed: int, n: int, d: int, scale: float) -> None:
    x, y = _embeddings(seed, n, d)
    loss, metrics = clip_loss(jnp.asarray(x), jnp.asarray(y), scale)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(float(loss), naive_clip(x, y, scale), rtol=1e-5, atol=1e-5)
    assert 0.0 <= float(metrics["i2t_accuracy"]) <= 1.0


@pytest.mark.parametrize(
    "seed,n,d,scale,bias", [(0, 5, 8, 10.0, -10.0), (1, 12, 16, 3.0, 0.5), (2, 9, 4, 50.0, -2.0)]
)
def test_siglip_matches_naive(seed: int, n: int, d: int, scale: float, bias: float) -> None:
    x, y = _embeddings(seed, n, d)
    loss, _ = siglip_loss(jnp.asarray(x), jnp.asarray(y), scale, bias)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(float(loss), naive_siglip(x, y, scale, bias), rtol=1e-5, atol=1e-5)


def test_siglip_normalisation_is_sum_over_texts_mean_over_images() -> None:
    # All-zero embeddings and zero bias: every pair has logit 0 and contributes log 2, so the
    # paper's normalisation gives B * log 2 (a mean over the B² pairs would give log 2).
    n = 6
    z = jnp.zeros((n, 3))
    loss, _ = siglip_loss(z, z, 1.0, 0.0)
    np.testing.assert_allclose(float(loss), n * math.log(2.0), rtol=1e-6)


def test_bfloat16_inputs_give_float32_loss() -> None:
    x, y = _embeddings(3, 8, 16)
    xb, yb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
    xr, yr = np.asarray(xb.astype(jnp.float32)), np.asarray(yb.astype(jnp.float32))
    loss, _ = clip_loss(xb, yb, jnp.asarray(20.0, jnp.bfloat16))
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(float(loss), naive_clip(xr, yr, 20.0), rtol=1e-5, atol=1e-5)
    loss, _ = siglip_loss(xb, yb, 10.0, -10.0)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(float(loss), naive_siglip(xr, yr, 10.0, -10.0), rtol=1e-5, atol=1e-5)


def test_accuracy_metrics_hand_made() -> None:
    eye = jnp.eye(4)
    _, m = clip_loss(eye, eye, 10.0)
    assert float(m["i2t_accuracy"]) == 1.0 and float(m["t2i_accuracy"]) == 1.0
    # Texts rolled by one: image i's best text is i+1, never i.
    _, m = siglip_loss(eye, jnp.roll(eye, 1, axis=0), 10.0, -5.0)
    assert float(m["i2t_accuracy"]) == 0.0 and float(m["t2i_accuracy"]) == 0.0
    # Only image 0 paired with its own text: rows 1..3 point elsewhere.
    y = jnp.stack([eye[0], eye[2], eye[3], eye[1]])
    _, m = clip_loss(eye, y, 10.0)
    np.testing.assert_allclose(float(m["i2t_accuracy"]), 0.25)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(jnp.zeros((4, 3)), jnp.zeros((5, 3)), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        siglip_loss(jnp.zeros((4,)), jnp.zeros((4,)), 1.0, 0.0)


def test_adapters_match_functions() -> None:
    x, y = _embeddings(4, 6, 8)
    outputs = {
        "image_emb": jnp.asarray(x),
        "text_emb": jnp.asarray(y),
        "logit_scale": jnp.asarray(7.0),
        "logit_bias": jnp.asarray(-3.0),
    }
    # The two-tower contrastive objectives, each reading the loss of the model's outputs.
    assert {name for name, objective in OBJECTIVES.items() if issubclass(objective, Clip)} == {"clip", "siglip"}
    contrastive = {name: make_objective(apply_overrides(ExperimentConfig(), [f"objective.name={name}"]), 64)
                   for name in ("clip", "siglip")}
    loss, _ = contrastive["clip"].loss(outputs)
    np.testing.assert_allclose(float(loss), float(clip_loss(x, y, 7.0)[0]), rtol=1e-6)
    loss, _ = contrastive["siglip"].loss(outputs)
    np.testing.assert_allclose(float(loss), float(siglip_loss(x, y, 7.0, -3.0)[0]), rtol=1e-6)
    # CLIP does not need a bias.
    no_bias = {k: v for k, v in outputs.items() if k != "logit_bias"}
    contrastive["clip"].loss(no_bias)


# ---------------------------------------------------------------- global negatives under GSPMD
N_DEV = 8
B = 32  # 4 examples per device


def _loss_only(name: str):
    def f(x: jax.Array, y: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
        if name == "clip":
            return clip_loss(x, y, scale)[0]
        return siglip_loss(x, y, scale, bias)[0]

    return f


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_sharded_loss_uses_global_negatives(name: str) -> None:
    assert jax.device_count() == N_DEV, "tests/conftest.py should set 8 fake CPU devices"
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())

    x, y = _embeddings(5, B, 16)
    scale, bias = jnp.asarray(10.0), jnp.asarray(-4.0)
    f = _loss_only(name)

    xs, ys = jax.device_put(x, batch), jax.device_put(y, batch)
    assert xs.sharding.shard_shape(xs.shape) == (B // N_DEV, 16)
    assert len(xs.addressable_shards) == N_DEV
    scale_s, bias_s = jax.device_put(scale, replicated), jax.device_put(bias, replicated)

    sharded = jax.jit(f, in_shardings=(batch, batch, replicated, replicated))
    loss_sharded = float(sharded(xs, ys, scale_s, bias_s))
    loss_ref = float(jax.jit(f)(jnp.asarray(x), jnp.asarray(y), scale, bias))
    np.testing.assert_allclose(loss_sharded, loss_ref, rtol=1e-5, atol=1e-5)

    # The mean of per-device losses (local negatives only) is a different number.
    k = B // N_DEV
    local = np.mean(
        [float(f(x[i : i + k], y[i : i + k], scale, bias)) for i in range(0, B, k)]
    )
    assert abs(loss_sharded - local) > 0.1, (loss_sharded, local)

    # Gradients (embeddings, scale, bias) equal the unsharded ones.
    grad = jax.grad(f, argnums=(0, 1, 2, 3))
    grad_sharded = jax.jit(grad, in_shardings=(batch, batch, replicated, replicated))
    g_sharded = grad_sharded(xs, ys, scale_s, bias_s)
    g_ref = jax.jit(grad)(jnp.asarray(x), jnp.asarray(y), scale, bias)
    for gs, gr in zip(g_sharded, g_ref, strict=True):
        np.testing.assert_allclose(np.asarray(gs), np.asarray(gr), rtol=1e-5, atol=1e-6)
    assert g_sharded[0].sharding.is_equivalent_to(batch, 2)
