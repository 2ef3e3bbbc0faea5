"""SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"): CLIP's towers
trained with the pairwise sigmoid loss.

Like :mod:`radfm_jax.objectives.clip`, the inputs are the global batch and the full ``(B, B)``
logit matrix is written in plain ``jnp``; GSPMD partitions it under ``jax.jit``, so negatives come
from the whole global batch. With ``objective.chunked`` the paper's chunked "ring" form
(objectives/siglip_chunked.py) computes the same loss without any device holding more than a
(B / devices)^2 block of logits.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from radfm_jax.config.schema import ObjectiveConfig
from radfm_jax.objectives.base import Metrics, Outputs
from radfm_jax.objectives.clip import Clip, contrastive_logits, in_batch_accuracy
from radfm_jax.objectives.siglip_chunked import chunked_siglip_loss
from radfm_jax.parallel.mesh import BATCH_AXES


@dataclasses.dataclass(frozen=True)
class SiglipConfig(ObjectiveConfig):
    name: Literal["siglip"] = dataclasses.field(default="siglip", init=False)
    # The paper's chunked form: text embeddings rotate around the batch devices so no device
    # holds more than a (B/devices)^2 block of logits. Same loss and gradients.
    chunked: bool = False


def siglip_loss(
    image_emb: jax.Array,
    text_emb: jax.Array,
    logit_scale: jax.Array | float,
    logit_bias: jax.Array | float,
) -> tuple[jax.Array, Metrics]:
    """Sigmoid contrastive loss, normalised as in the SigLIP paper (Algorithm 1).

    ``loss = -(1/B) * sum_i sum_j log_sigmoid(z_ij * (t * x_i·y_j + b))`` with ``z_ii = +1`` and
    ``z_ij = -1`` for ``i != j``: the sum over all ``B`` texts for each image, averaged over the
    ``B`` images (so the value grows with ``B``; it is *not* a mean over the ``B²`` pairs).

    Args:
      image_emb: ``(B, D)`` L2-normalised image embeddings of the global batch (not re-normalised
        here).
      text_emb: ``(B, D)`` L2-normalised text embeddings; ``text_emb[i]`` pairs with image ``i``.
      logit_scale: the multiplicative temperature ``t = exp(t')`` (already exponentiated), scalar.
        The paper initialises ``t' = log 10``.
      logit_bias: the additive bias ``b``, scalar. The paper initialises ``b = -10``.

    Returns:
      ``(loss, metrics)`` in float32; ``metrics`` holds ``i2t_accuracy``, ``t2i_accuracy``
      (top-1 within the batch), ``pos_prob`` / ``neg_prob`` (mean sigmoid on / off the diagonal),
      ``logit_scale`` and ``logit_bias``.
    """
    logits = contrastive_logits(image_emb, text_emb, logit_scale) + jnp.asarray(
        logit_bias, jnp.float32
    )
    n = logits.shape[0]
    eye = jnp.eye(n, dtype=jnp.bool_)
    labels = jnp.where(eye, 1.0, -1.0).astype(jnp.float32)
    loss = -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / n
    probs = jax.nn.sigmoid(logits)
    pos_prob = jnp.sum(jnp.where(eye, probs, 0.0)) / n
    neg_prob = jnp.sum(jnp.where(eye, 0.0, probs)) / max(n * (n - 1), 1)
    metrics: Metrics = {
        **in_batch_accuracy(logits),
        "pos_prob": pos_prob,
        "neg_prob": neg_prob,
        "logit_scale": jnp.asarray(logit_scale, jnp.float32),
        "logit_bias": jnp.asarray(logit_bias, jnp.float32),
    }
    return loss, metrics


def siglip_loss_of(outputs: Outputs) -> tuple[jax.Array, Metrics]:
    """:func:`siglip_loss` of a two-tower model's outputs."""
    return siglip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"], outputs["logit_bias"])


class Siglip(Clip):
    """CLIP's model, batch and costs with the sigmoid loss (dense or chunked over the mesh)."""

    Config = SiglipConfig

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        if not self.cfg.chunked:
            return siglip_loss_of(outputs)
        if self.mesh is None:
            raise ValueError("objective.chunked=true splits the loss over the device mesh; build the "
                             "objective with the mesh (radfm_jax.train.experiment does)")
        return chunked_siglip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"],
                                   outputs["logit_bias"], mesh=self.mesh, batch_axes=BATCH_AXES)
