"""The report decoder's cache, MAE's masking and CoCa's text embedding, checked against the
uncached / unmasked computations they must equal."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config.loading import load_experiment
from radfm_jax.models import decoding
from radfm_jax.models.captioner import Captioner, CoCa, decode_step_fn
from radfm_jax.models.decoder import START_ID
from radfm_jax.models.mae import MaskedAutoencoder
from radfm_jax.models.vit import patchify

VOCAB, EOS = 40, 2


def _config(experiment: str, scan_layers: bool, **decoder):
    config = load_experiment(f"experiments/synthetic_cxr/{experiment}.py:smoke", [])
    model = dataclasses.replace(config.model, scan_layers=scan_layers,
                                decoder=dataclasses.replace(config.model.decoder, **decoder))
    return dataclasses.replace(config, model=model)


def _model(cls, config):
    size = config.data.input_size
    return cls(config.model, VOCAB, config.data.max_text_len, (size, size), nnx.Rngs(0))


def _images(config, batch=3, seed=0):
    size = config.data.input_size
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 1)), jnp.float32)


@nnx.jit
def _teacher_forced_logits(model, images, tokens):
    return model(images, tokens)["logits"]


def _greedy_without_cache(model, images, max_len):
    """Greedy decoding that re-runs the whole teacher-forced forward pass for every token."""
    tokens = np.zeros((images.shape[0], model.max_text_len), np.int32)
    done = np.zeros(images.shape[0], bool)
    for t in range(max_len):
        logits = np.asarray(_teacher_forced_logits(model, images, jnp.asarray(tokens)))
        nxt = np.where(done, 0, logits[:, t].argmax(-1))
        tokens[:, t] = nxt
        done |= nxt == EOS
    return tokens[:, :max_len]


@pytest.mark.parametrize("cls, experiment, scan", [
    (Captioner, "captioner", True), (Captioner, "captioner", False), (CoCa, "coca", True),
])
def test_cached_decoding_equals_recomputing_the_prefix(cls, experiment, scan):
    config = _config(experiment, scan, depth=2)
    model = _model(cls, config)
    images = _images(config)
    max_len = 16
    cached = decoding.greedy(decode_step_fn(model), model.init_cache(images), batch_size=3, max_len=max_len,
                             start_id=START_ID, eos_id=EOS)
    np.testing.assert_array_equal(np.asarray(cached), _greedy_without_cache(model, images, max_len))
    # The step logits themselves agree with the teacher-forced forward pass on that prefix.
    tokens = np.asarray(cached)
    padded = np.zeros((3, config.data.max_text_len), np.int32)
    padded[:, :max_len] = tokens
    logits = np.asarray(_teacher_forced_logits(model, images, jnp.asarray(padded)))
    cache = model.init_cache(images)
    previous = jnp.full((3,), START_ID, jnp.int32)
    for t in range(4):
        step_logits, cache = model.decode_step(previous, jnp.int32(t), cache)
        np.testing.assert_allclose(np.asarray(step_logits), logits[:, t], rtol=1e-4, atol=1e-4)
        previous = jnp.asarray(tokens[:, t])


def test_parallel_prediction_rows_ignore_their_inputs():
    config = _config("captioner", True)
    model = _model(Captioner, config)
    images = _images(config, batch=2)
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.integers(3, VOCAB, (2, config.data.max_text_len)), jnp.int32)
    b = jnp.asarray(rng.integers(3, VOCAB, (2, config.data.max_text_len)), jnp.int32)
    parallel = jnp.array([True, False])
    out_a = np.asarray(model(images, a, parallel)["logits"])
    out_b = np.asarray(model(images, b, parallel)["logits"])
    np.testing.assert_allclose(out_a[0], out_b[0], rtol=1e-5, atol=1e-5)  # all inputs masked
    assert not np.allclose(out_a[1], out_b[1])  # teacher forcing reads the tokens


def test_mae_hides_exactly_the_masked_patches():
    config = load_experiment("experiments/synthetic_cxr/mae.py:smoke", [])
    size = config.data.input_size
    model = MaskedAutoencoder(config.model, (size, size), mask_ratio=config.objective.mask_ratio, rngs=nnx.Rngs(0))
    images = _images(config, batch=2)
    noise = jax.random.uniform(jax.random.key(0), (2, model.num_patches))
    out = model(images, noise)
    mask = np.asarray(out["mask"])
    assert (mask.sum(axis=1) == model.num_patches - model.keep).all()
    # The hidden patches are the ones with the largest noise.
    ranks = np.argsort(np.argsort(np.asarray(noise), axis=1), axis=1)
    np.testing.assert_array_equal(mask, (ranks >= model.keep).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(out["target"]), np.asarray(patchify(images, config.model.image.patch_size)))
    # Changing hidden pixels changes nothing the model predicts: the encoder never saw them.
    patch = config.model.image.patch_size
    hidden = np.repeat(np.repeat(mask.reshape(2, *(2 * [config.data.input_size // patch])), patch, 1), patch, 2)
    altered = np.where(hidden[..., None] > 0, 5.0, np.asarray(images))
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(altered), noise)["pred"]), np.asarray(out["pred"]),
                               rtol=1e-5, atol=1e-5)
    # ... while changing a visible patch does.
    visible = np.where(hidden[..., None] == 0, 5.0, np.asarray(images))
    assert not np.allclose(np.asarray(model(jnp.asarray(visible), noise)["pred"]), np.asarray(out["pred"]))


def test_coca_text_embedding_reads_the_report_up_to_eos_only():
    config = _config("coca", True)
    model = _model(CoCa, config)
    length = config.data.max_text_len
    tokens = np.zeros((2, length), np.int32)
    tokens[:, :5] = [[5, 6, 7, 8, EOS], [5, 6, 7, 9, EOS]]
    emb = np.asarray(model.encode_text(jnp.asarray(tokens)))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(emb[0], emb[1])  # the last word before EOS matters
    # Anything after EOS (where padding would be) cannot reach the EOS position (causal).
    noisy = tokens.copy()
    noisy[:, 6:] = 11
    np.testing.assert_allclose(np.asarray(model.encode_text(jnp.asarray(noisy))), emb, rtol=1e-5, atol=1e-6)
    # The training forward pass yields the same text embedding.
    out = model(_images(config, batch=2), jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(out["text_emb"]), emb, rtol=1e-5, atol=1e-6)
