"""Report generation (captioning; CapPa when trained with parallel prediction): the image
tower and a report decoder cross-attending to its tokens, trained by teacher-forced token
cross-entropy with optional label smoothing."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import fraction, ranged
from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.models.captioner import Captioner
from radfm_jax.models.costs import F32, TowerCosts
from radfm_jax.models.layers import remat_policy_name
from radfm_jax.models.towers import IMAGE_TOWERS, REPORT_DECODERS
from radfm_jax.objectives.base import (
    Batch,
    Metrics,
    Objective,
    Outputs,
    StepFlops,
    check_fraction,
    image_channels,
    image_shape,
    stacks_activation_bytes,
    step_flops,
)


@dataclasses.dataclass(frozen=True)
class CaptionConfig(ObjectiveConfig):
    name: Literal["caption"] = dataclasses.field(default="caption", init=False)
    # Fraction of examples trained by parallel prediction (CapPa: all decoder inputs masked, no
    # causal mask); label smoothing of the token cross-entropy.
    parallel_fraction: float = fraction(0.0)
    label_smoothing: float = ranged(0.0, ge=0, lt=1)


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


def generative_tower_costs(config: ExperimentConfig, vocab_size: int, length: int) -> tuple[TowerCosts, TowerCosts]:
    """The image tower (its pooling head included) and the report decoder over `length` inputs
    cross-attending to the image tower's tokens."""
    model, shape = config.model, image_shape(config)
    tower = IMAGE_TOWERS[model.image.name]
    image = tower.costs(model.image, shape, image_channels(config))
    decoder = REPORT_DECODERS[model.decoder.name].costs(model.decoder, length, vocab_size,
                                                       tower.num_tokens(model.image, shape), image.width)
    return image, decoder


def vocabulary_head_bytes(length: int, vocab_size: int) -> float:
    """Per example: what the token cross-entropy keeps: the f32 logits and log-probabilities."""
    return 2 * length * vocab_size * F32


class Caption(Objective):
    """The image tower (model.image) and the report decoder (model.decoder)."""

    Config = CaptionConfig
    default_evaluators = ("generation",)

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        check_fraction("objective.parallel_fraction", config.objective.parallel_fraction, low=0.0, high=1.0)

    def build_model(self, rngs: nnx.Rngs) -> Captioner:
        return Captioner(self.config.model, self.vocab_size, self.config.data.max_text_len,
                         image_shape(self.config), rngs=rngs, channels=image_channels(self.config))

    def draw_inputs(self, key: jax.Array, batch_size: int) -> Batch:
        if not self.cfg.parallel_fraction:
            return {}
        return {"parallel": jax.random.uniform(key, (batch_size,)) < self.cfg.parallel_fraction}

    def forward(self, model: Captioner, batch: Batch, extra: dict) -> Outputs:
        return model(batch["image"], batch["tokens"], batch.get("parallel"))

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        return caption_loss(outputs["logits"], outputs["targets"], label_smoothing=self.cfg.label_smoothing)

    def flops(self) -> StepFlops:
        """The image tower's blocks (captioning reads its tokens, not its pooled output) and
        the decoder over the report's L inputs."""
        image, decoder = generative_tower_costs(self.config, self.vocab_size, self.config.data.max_text_len)
        policy = remat_policy_name(self.config.model.remat)
        return step_flops(self.config.batch_size, input_flops=image.input_flops,
                          differentiable=image.blocks_flops + decoder.blocks_flops + decoder.head_flops,
                          recompute=image.recompute_flops(policy) + decoder.recompute_flops(policy))

    def activation_bytes_per_example(self) -> float:
        length = self.config.data.max_text_len
        image, decoder = generative_tower_costs(self.config, self.vocab_size, length)
        return stacks_activation_bytes((*image.stacks, *decoder.stacks), self.config,
                                       extra_saved=vocabulary_head_bytes(length, self.vocab_size))
