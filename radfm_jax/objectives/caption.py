"""Report-generation loss: teacher-forced token cross-entropy with optional label smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def caption_loss(logits: jax.Array, targets: jax.Array, *, label_smoothing: float = 0.0,
                 pad_id: int = 0) -> tuple[jax.Array, Metrics]:
    """logits (B, L, V), targets (B, L) with pad_id after EOS -> the mean over examples of each
    report's mean token cross-entropy (a per-example mean, so gradient accumulation over
    microbatches is exact); with label smoothing e the target is (1 - e) one-hot + e uniform.
    Metrics: token accuracy and perplexity over the batch's real tokens."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)
    valid = (targets != pad_id).astype(jnp.float32)
    count = valid.sum(axis=1)
    per_example = jnp.sum(nll * valid, axis=1) / jnp.maximum(count, 1.0)
    has_tokens = (count > 0).astype(jnp.float32)
    loss = jnp.sum(per_example * has_tokens) / jnp.maximum(has_tokens.sum(), 1.0)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    total = jnp.maximum(valid.sum(), 1.0)
    token_nll = jnp.sum(-jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0] * valid) / total
    return loss, {"token_accuracy": jnp.sum(correct * valid) / total, "perplexity": jnp.exp(token_nll)}
