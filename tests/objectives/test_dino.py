"""DINO / iBOT / KoLeo losses and the EMA teacher against NumPy written from the papers' formulas
(loops, no shared code), and the multi-crop views."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.multicrop import MultiCrop
from radfm_jax.objectives.base import with_params
from radfm_jax.objectives.dino import dino_loss, ibot_loss, koleo_loss, teacher_momentum
from radfm_jax.train.experiment import Experiment

T_TEACHER, T_STUDENT = 0.04, 0.1


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def log_softmax(x):
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def test_dino_loss_is_the_papers_cross_entropy_over_other_views():
    rng = np.random.default_rng(0)
    b, views, k = 3, 5, 7
    teacher, student, center = rng.normal(size=(b, 2, k)), rng.normal(size=(b, views, k)), rng.normal(size=k)
    total, terms = 0.0, 0
    for i in range(b):
        for t in range(2):
            p = softmax((teacher[i, t] - center) / T_TEACHER)
            for s in range(views):
                if s == t:
                    continue
                total += -np.sum(p * log_softmax(student[i, s] / T_STUDENT))
                terms += 1
    expected = total / terms
    got = dino_loss(jnp.asarray(teacher), jnp.asarray(student), jnp.asarray(center), T_TEACHER, T_STUDENT)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_ibot_loss_averages_masked_patches_per_view():
    rng = np.random.default_rng(1)
    b, n, k = 2, 6, 5
    teacher, student, center = rng.normal(size=(b, 2, n, k)), rng.normal(size=(b, 2, n, k)), rng.normal(size=k)
    mask = rng.uniform(size=(b, 2, n)) < 0.5
    mask[0, 1] = False  # a view without masked patches counts 0
    per_view = []
    for i in range(b):
        for v in range(2):
            losses = [-np.sum(softmax((teacher[i, v, j] - center) / T_TEACHER)
                              * log_softmax(student[i, v, j] / T_STUDENT)) for j in range(n) if mask[i, v, j]]
            per_view.append(np.mean(losses) if losses else 0.0)
    got = ibot_loss(jnp.asarray(teacher), jnp.asarray(student), jnp.asarray(mask), jnp.asarray(center),
                    T_TEACHER, T_STUDENT)
    np.testing.assert_allclose(float(got), np.mean(per_view), rtol=1e-5)


def test_koleo_is_minus_mean_log_nearest_neighbour_distance():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 2, 4))
    values = []
    for v in range(2):
        unit = features[:, v] / np.linalg.norm(features[:, v], axis=1, keepdims=True)
        for i in range(6):
            nearest = min(np.linalg.norm(unit[i] - unit[j]) for j in range(6) if j != i)
            values.append(-np.log(nearest + 1e-8))
    np.testing.assert_allclose(float(koleo_loss(jnp.asarray(features))), np.mean(values), rtol=1e-5)


def test_teacher_momentum_rises_along_a_cosine_to_one():
    steps = jnp.asarray([0, 50, 100, 200])
    np.testing.assert_allclose(np.asarray(teacher_momentum(steps, 0.99, 100)),
                               [0.99, 1 - 0.01 * 0.5, 1.0, 1.0], rtol=1e-6)


def test_multicrop_views_have_the_sizes_and_differ():
    crop = MultiCrop(size=32, local_size=16, local_count=3)
    image = np.random.default_rng(0).normal(size=(32, 32, 1)).astype(np.float32)
    out = crop.random_map({"image": image}, np.random.default_rng(1))
    assert out["global_views"].shape == (2, 32, 32, 1) and out["local_views"].shape == (3, 16, 16, 1)
    assert not np.allclose(out["global_views"][0], out["global_views"][1])
    again = crop.random_map({"image": image}, np.random.default_rng(1))
    np.testing.assert_array_equal(again["local_views"], out["local_views"])  # a function of the rng


@pytest.fixture(scope="module")
def experiment():
    config = load_experiment("experiments/synthetic_cxr/dino.py:smoke",
                             ["mesh.data=2", "mesh.fsdp=4", "model.scan_layers=false", "total_steps=10"])
    return Experiment.plan(config)


def test_a_step_moves_the_teacher_and_centres_as_the_formulas_say(experiment):
    """After one sharded step: teacher = m * teacher + (1 - m) * new student, m at step 0; each
    centre = c * centre + (1 - c) * the batch mean of the teacher's logits (recomputed here
    by running the initial teacher on the batch)."""
    cfg = experiment.config.objective
    state = experiment.init_state()
    initial = jax.device_get(state)
    batch = experiment.random_batch(0)
    new_state, metrics = experiment.train_step().jit()(jax.tree.map(lambda x: x.copy(), state), batch)
    assert not any(key.startswith("_") for key in metrics)  # the centres' signals are not logged
    new = jax.device_get(new_state)
    m = cfg.teacher_momentum
    jax.tree.map(lambda t, t0, p: np.testing.assert_allclose(t, m * t0 + (1 - m) * p, rtol=1e-5, atol=1e-7),
                 new.extra["teacher"], initial.extra["teacher"], new.params)

    model = experiment.layout.model.merge(initial.params)
    teacher = with_params(model, initial.extra["teacher"])
    views = np.asarray(batch["global_views"])
    out = teacher(jnp.asarray(views), jnp.zeros((views.shape[0], 2, 16), bool))
    c = cfg.center_momentum
    np.testing.assert_allclose(new.extra["center"], (1 - c) * np.asarray(out["cls_logits"]).mean(axis=(0, 1)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.extra["patch_center"],
                               (1 - c) * np.asarray(out["patch_logits"]).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    assert np.isfinite(metrics["loss"]) and float(metrics["ibot_loss"]) > 0
