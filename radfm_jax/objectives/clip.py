"""CLIP / ConVIRT / CheXzero: an image tower and a report tower trained with the symmetric
InfoNCE loss.

The loss is a pure function of model outputs. The inputs are the *global* batch: under
``jax.jit`` with the batch dimension sharded over the mesh, the full ``(B, B)`` logit matrix
written here in plain ``jnp`` is partitioned by GSPMD, so every example sees all ``B - 1`` other
examples in the global batch as negatives (no ``pmap`` / ``psum`` / ``all_gather`` by hand).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ObjectiveConfig
from radfm_jax.models.costs import TowerCosts
from radfm_jax.models.layers import remat_policy_name
from radfm_jax.models.towers import IMAGE_TOWERS, TEXT_TOWERS
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.objectives.base import (
    Batch,
    Metrics,
    Objective,
    Outputs,
    StepFlops,
    image_channels,
    image_shape,
    stacks_activation_bytes,
    step_flops,
)


@dataclasses.dataclass(frozen=True)
class ClipConfig(ObjectiveConfig):
    """CLIP has no settings of its own: the temperature's start is model.init_temperature."""

    name: Literal["clip"] = dataclasses.field(default="clip", init=False)


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


def clip_loss_of(outputs: Outputs) -> tuple[jax.Array, Metrics]:
    """:func:`clip_loss` of a two-tower model's outputs (image_emb, text_emb, logit_scale)."""
    return clip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"])


class Clip(Objective):
    """Image tower and text tower (model.image, model.text) projected to a shared space; the
    contrastive loss of the global batch."""

    Config = ClipConfig
    batch_coupled = True
    default_evaluators = ("zeroshot_retrieval",)

    def build_model(self, rngs: nnx.Rngs) -> TwoTower:
        return TwoTower(self.config.model, self.vocab_size, self.config.data.max_text_len,
                        image_shape(self.config), rngs=rngs, channels=image_channels(self.config))

    def forward(self, model: TwoTower, batch: Batch, extra: dict) -> Outputs:
        return model(batch["image"], batch["tokens"])

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        return clip_loss_of(outputs)

    def tower_costs(self) -> tuple[TowerCosts, TowerCosts]:
        model, data = self.config.model, self.config.data
        image = IMAGE_TOWERS[model.image.name].costs(model.image, image_shape(self.config), image_channels(self.config))
        text = TEXT_TOWERS[model.text.name].costs(model.text, data.max_text_len)
        return image, text

    def flops(self) -> StepFlops:
        """Both towers, their projections and the (B, B) logits; GradCache (gradient
        accumulation) runs both towers' forward pass a second time."""
        image, text = self.tower_costs()
        batch, embed = self.config.batch_size, self.config.model.embed_dim
        projections = 2 * (image.width + text.width) * embed
        per_example = image.blocks_flops + image.head_flops + text.blocks_flops + projections
        logits = 2 * batch * batch * embed  # every image against every text, f32
        policy = remat_policy_name(self.config.model.remat)
        flops = step_flops(batch, input_flops=image.input_flops, differentiable=per_example, coupled=logits,
                           recompute=image.recompute_flops(policy) + text.recompute_flops(policy))
        if self.config.optim.grad_accum_steps > 1:  # GradCache: an extra forward pass, without the loss
            flops = dataclasses.replace(flops, recompute=flops.recompute + flops.forward - logits)
        return flops

    def activation_bytes_per_example(self) -> float:
        image, text = self.tower_costs()
        return stacks_activation_bytes((*image.stacks, *text.stacks), self.config)
