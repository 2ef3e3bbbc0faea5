"""MAE, captioning and CoCa losses against naive NumPy loops (float64) on tiny inputs."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from test_objectives import naive_clip

from radfm_jax.objectives.caption import caption_loss
from radfm_jax.objectives.clip import clip_loss
from radfm_jax.objectives.coca import coca_loss
from radfm_jax.objectives.mae import mae_loss


def naive_mae(pred, target, mask, norm_pix):
    per_example = []
    for b in range(pred.shape[0]):
        errors = []
        for n in range(pred.shape[1]):
            if not mask[b, n]:
                continue
            t = [float(v) for v in target[b, n]]
            if norm_pix:
                mean = sum(t) / len(t)
                var = sum((v - mean) ** 2 for v in t) / len(t)
                t = [(v - mean) / math.sqrt(var + 1e-6) for v in t]
            errors.append(sum((float(p) - v) ** 2 for p, v in zip(pred[b, n], t)) / len(t))
        per_example.append(sum(errors) / len(errors))
    return sum(per_example) / len(per_example)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_numpy(norm_pix):
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4)) * 3 + 1
    mask = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 0]], np.float32)
    loss, metrics = mae_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32), jnp.asarray(mask),
                             norm_pix=norm_pix)
    np.testing.assert_allclose(float(loss), naive_mae(pred, target, mask, norm_pix), rtol=1e-5)
    # The visible patches' error is reported but not trained on.
    assert float(metrics["visible_patch_error"]) > 0


def naive_caption(logits, targets, smoothing):
    losses = []
    for b in range(logits.shape[0]):
        token_losses = []
        for t in range(logits.shape[1]):
            if targets[b, t] == 0:
                continue
            row = [float(v) for v in logits[b, t]]
            m = max(row)
            log_z = m + math.log(sum(math.exp(v - m) for v in row))
            logp = [v - log_z for v in row]
            nll = -logp[targets[b, t]]
            token_losses.append((1 - smoothing) * nll - smoothing * sum(logp) / len(logp))
        losses.append(sum(token_losses) / len(token_losses))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_caption_loss_matches_numpy(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 6, 7)) * 2
    targets = np.array([[3, 4, 2, 0, 0, 0], [5, 6, 1, 3, 4, 2], [2, 0, 0, 0, 0, 0]])
    loss, metrics = caption_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(targets), label_smoothing=smoothing)
    np.testing.assert_allclose(float(loss), naive_caption(logits, targets, smoothing), rtol=1e-5)
    valid = targets != 0
    accuracy = (logits.argmax(-1) == targets)[valid].mean()
    np.testing.assert_allclose(float(metrics["token_accuracy"]), accuracy, rtol=1e-6)


def test_coca_is_the_weighted_sum():
    rng = np.random.default_rng(2)
    image, text = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    logits = rng.normal(size=(4, 5, 6))
    targets = rng.integers(1, 6, (4, 5))
    outputs = {"image_emb": jnp.asarray(image, jnp.float32), "text_emb": jnp.asarray(text, jnp.float32),
               "logit_scale": jnp.float32(7.0), "logits": jnp.asarray(logits, jnp.float32),
               "targets": jnp.asarray(targets)}

    def clip(out):
        return clip_loss(out["image_emb"], out["text_emb"], out["logit_scale"])

    loss, metrics = coca_loss(outputs, clip, contrastive_weight=0.5, caption_weight=2.0)
    expected = 0.5 * naive_clip(image, text, 7.0) + 2.0 * naive_caption(logits, targets, 0.0)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["contrastive_loss"]), naive_clip(image, text, 7.0), rtol=1e-5)
