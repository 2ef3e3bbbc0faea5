"""CLIP / ConVIRT / CheXzero symmetric InfoNCE loss.

Pure function of model outputs. The inputs are the *global* batch: under ``jax.jit`` with the
batch dimension sharded over the mesh, the full ``(B, B)`` logit matrix written here in plain
``jnp`` is partitioned by GSPMD, so every example sees all ``B - 1`` other examples in the global
batch as negatives (no ``pmap`` / ``psum`` / ``all_gather`` by hand).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def _check_pair(image_emb: jax.Array, text_emb: jax.Array) -> None:
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            "contrastive loss expects image_emb and text_emb of the same shape (batch, dim); "
            f"got {image_emb.shape} and {text_emb.shape}"
        )


def contrastive_logits(
    image_emb: jax.Array, text_emb: jax.Array, logit_scale: jax.Array | float
) -> jax.Array:
    """``logit_scale * image_emb @ text_emb.T`` in float32, shape ``(B_images, B_texts)``.

    Inputs are cast to float32 and the matmul runs at ``Precision.HIGHEST`` so that the logits
    are float32 whatever the compute dtype of the towers (DESIGN.md: contrastive logits float32).
    """
    _check_pair(image_emb, text_emb)
    x = image_emb.astype(jnp.float32)
    y = text_emb.astype(jnp.float32)
    sims = jnp.einsum("id,jd->ij", x, y, precision=jax.lax.Precision.HIGHEST)
    return jnp.asarray(logit_scale, jnp.float32) * sims


def in_batch_accuracy(logits: jax.Array) -> Metrics:
    """Top-1 retrieval accuracy within the batch; the match for row/column ``i`` is ``i``."""
    labels = jnp.arange(logits.shape[0])
    i2t = jnp.mean((jnp.argmax(logits, axis=1) == labels).astype(jnp.float32))
    t2i = jnp.mean((jnp.argmax(logits, axis=0) == labels).astype(jnp.float32))
    return {"i2t_accuracy": i2t, "t2i_accuracy": t2i}


def clip_loss(
    image_emb: jax.Array, text_emb: jax.Array, logit_scale: jax.Array | float
) -> tuple[jax.Array, Metrics]:
    """Symmetric InfoNCE (Radford et al. 2021, CLIP; Zhang et al. 2020, ConVIRT).

    Args:
      image_emb: ``(B, D)`` image embeddings of the global batch. The model is expected to have
        L2-normalised them already; this function does not re-normalise.
      text_emb: ``(B, D)`` text embeddings; ``text_emb[i]`` is the report for ``image_emb[i]``.
      logit_scale: the multiplicative inverse temperature ``t = exp(t')`` (already
        exponentiated, as the model returns it), a scalar.

    Returns:
      ``(loss, metrics)``: ``loss = (CE_image→text + CE_text→image) / 2`` where each
      cross-entropy is the mean over the ``B`` rows (resp. columns) of
      ``-log softmax(logits)[i, i]``; all
      float32. ``metrics`` holds ``i2t_loss``, ``t2i_loss``, ``i2t_accuracy``, ``t2i_accuracy``
      (top-1 within the batch) and ``logit_scale``.
    """
    logits = contrastive_logits(image_emb, text_emb, logit_scale)
    i2t = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))
    t2i = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=0)))
    loss = 0.5 * (i2t + t2i)
    metrics: Metrics = {
        "i2t_loss": i2t,
        "t2i_loss": t2i,
        **in_batch_accuracy(logits),
        "logit_scale": jnp.asarray(logit_scale, jnp.float32),
    }
    return loss, metrics
