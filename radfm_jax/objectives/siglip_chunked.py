"""SigLIP's sigmoid loss in the paper's chunked ("ring") form across devices.

Zhai et al. 2023, Sec. 3.3: with the global batch split over ``n`` devices, each device keeps
its ``b = B / n`` image embeddings and the text embeddings travel around the devices with
``ppermute``. At every one of the ``n`` visits a device adds the sigmoid loss of its images
against the visiting ``(b, D)`` text chunk; only the first visit (its own texts) holds positive
pairs. No device ever holds more than a ``(b, b)`` block of logits, and each visit is
rematerialised in the backward pass, so the saved activations per device are the ``n`` visiting
text chunks (``B x D``), not logits. The value and gradients equal :func:`siglip_loss` on the
global batch; so do the metrics (ties in the argmax aside).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from radfm_jax.objectives.clip import Metrics, _check_pair, contrastive_logits


def chunked_siglip_loss(
    image_emb: jax.Array,
    text_emb: jax.Array,
    logit_scale: jax.Array | float,
    logit_bias: jax.Array | float,
    *,
    mesh: Mesh,
    batch_axes: tuple[str, ...],
) -> tuple[jax.Array, Metrics]:
    """:func:`radfm_jax.objectives.siglip.siglip_loss` computed chunk by chunk over `mesh`.

    Args:
      image_emb, text_emb: ``(B, D)`` embeddings of the global batch, split (or to be split)
        over `batch_axes` along the batch dimension.
      logit_scale, logit_bias: the scalar temperature ``t`` (exponentiated) and bias ``b``.
      mesh: the device mesh; `batch_axes` are its axes the batch is split over. Other mesh
        axes (e.g. ``tensor``) hold copies of the same computation.

    Returns:
      ``(loss, metrics)`` with the same keys as ``siglip_loss``, all float32 and replicated.
    """
    _check_pair(image_emb, text_emb)
    batch = image_emb.shape[0]
    shards = math.prod(mesh.shape[axis] for axis in batch_axes)
    if batch % shards:
        raise ValueError(
            f"chunked SigLIP needs the batch ({batch}) to be divisible by the {shards} devices "
            f"of mesh axes {batch_axes}; choose a batch size that is a multiple of {shards}"
        )
    scale = jnp.asarray(logit_scale, jnp.float32)
    bias = jnp.asarray(logit_bias, jnp.float32)
    split, whole = PartitionSpec(batch_axes), PartitionSpec()
    ring = jax.shard_map(
        functools.partial(_ring_loss, axes=batch_axes, shards=shards, global_batch=batch),
        mesh=mesh,
        in_specs=(split, split, whole, whole),
        out_specs=(whole, whole),
    )
    loss, metrics = ring(image_emb, text_emb, scale, bias)
    return loss, {**metrics, "logit_scale": scale, "logit_bias": bias}


def _ring_loss(
    images: jax.Array,
    texts: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    *,
    axes: tuple[str, ...],
    shards: int,
    global_batch: int,
) -> tuple[jax.Array, Metrics]:
    """Per-device body: own texts first (with positives), then `shards - 1` visiting chunks."""
    local = images.shape[0]
    logits = contrastive_logits(images, texts, scale) + bias
    eye = jnp.eye(local, dtype=jnp.bool_)
    loss = -jnp.sum(jax.nn.log_sigmoid(jnp.where(eye, logits, -logits)))

    # Metrics never need gradients; they ride along the ring as running maxima and sums.
    seen = jax.lax.stop_gradient(logits)
    own_positive = jnp.diagonal(seen)  # logit of each local image with its own text
    probs = jax.nn.sigmoid(seen)
    pos_prob_sum = jnp.sum(jnp.diagonal(probs))
    neg_prob_sum = jnp.sum(jnp.where(eye, 0.0, probs))
    row_max = jnp.max(seen, axis=1)  # per local image, over the texts seen so far
    # Per text of the visiting chunk: its max over the images seen so far, and its positive.
    chunk_col_max, chunk_positive = jnp.max(seen, axis=0), own_positive

    rotate = functools.partial(
        jax.lax.ppermute, axis_name=axes, perm=[(i, (i + 1) % shards) for i in range(shards)]
    )

    @jax.checkpoint  # keep only the visiting chunk per step; recompute its logits backward
    def visit(carry, _):
        texts, col_max, positive, loss, row_max, neg_prob_sum = carry
        texts, col_max, positive = rotate((texts, col_max, positive))
        logits = contrastive_logits(images, texts, scale) + bias
        loss = loss - jnp.sum(jax.nn.log_sigmoid(-logits))  # every pair here is a negative
        seen = jax.lax.stop_gradient(logits)
        carry = (
            texts,
            jnp.maximum(col_max, jnp.max(seen, axis=0)),
            positive,
            loss,
            jnp.maximum(row_max, jnp.max(seen, axis=1)),
            neg_prob_sum + jnp.sum(jax.nn.sigmoid(seen)),
        )
        return carry, None

    init = (texts, chunk_col_max, chunk_positive, loss, row_max, neg_prob_sum)
    (_, chunk_col_max, chunk_positive, loss, row_max, neg_prob_sum), _ = jax.lax.scan(
        visit, init, None, length=shards - 1
    )
    # After the last visit each device holds a chunk that has met every image: count it.
    i2t_correct = jnp.sum((own_positive >= row_max).astype(jnp.float32))
    t2i_correct = jnp.sum((chunk_positive >= chunk_col_max).astype(jnp.float32))
    totals = jax.lax.psum((loss, i2t_correct, t2i_correct, pos_prob_sum, neg_prob_sum), axes)
    loss, i2t_correct, t2i_correct, pos_prob_sum, neg_prob_sum = totals
    n = global_batch
    metrics = {
        "i2t_accuracy": i2t_correct / n,
        "t2i_accuracy": t2i_correct / n,
        "pos_prob": pos_prob_sum / n,
        "neg_prob": neg_prob_sum / max(n * (n - 1), 1),
    }
    return loss / n, metrics
