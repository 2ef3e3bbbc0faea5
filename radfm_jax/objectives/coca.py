"""CoCa (Yu et al. 2022): a captioner whose unimodal decoder blocks also give a report
embedding, trained with a weighted sum of an image-report contrastive loss (CLIP or SigLIP) and
the captioning loss, both from one forward pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
from flax import nnx

from radfm_jax.config.ranges import non_negative, ranged
from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models.captioner import CoCa
from radfm_jax.models.layers import remat_policy_name
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
from radfm_jax.objectives.caption import caption_loss, generative_tower_costs, vocabulary_head_bytes
from radfm_jax.objectives.clip import clip_loss_of
from radfm_jax.objectives.siglip import siglip_loss_of

# CoCa's contrastive term, by objective.contrastive.
CONTRASTIVE_LOSSES: dict[str, Callable[[Outputs], tuple[jax.Array, Metrics]]] = {
    "clip": clip_loss_of,
    "siglip": siglip_loss_of,
}


@dataclasses.dataclass(frozen=True)
class CocaConfig(ObjectiveConfig):
    name: Literal["coca"] = dataclasses.field(default="coca", init=False)
    contrastive: Literal["clip", "siglip"] = "clip"
    contrastive_weight: float = non_negative(1.0)
    caption_weight: float = non_negative(2.0)
    label_smoothing: float = ranged(0.0, ge=0, lt=1)  # of the token cross-entropy


def coca_loss(
    outputs: Outputs,
    contrastive: Callable[[Outputs], tuple[jax.Array, Metrics]],
    *,
    contrastive_weight: float,
    caption_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, Metrics]:
    """contrastive_weight * contrastive(outputs) + caption_weight * caption loss; both terms
    and their metrics are reported."""
    con, con_metrics = contrastive(outputs)
    cap, cap_metrics = caption_loss(outputs["logits"], outputs["targets"], label_smoothing=label_smoothing)
    loss = contrastive_weight * con + caption_weight * cap
    return loss, {**con_metrics, **cap_metrics, "contrastive_loss": con, "caption_loss": cap}


class Coca(Objective):
    """The image tower (model.image, use pool="map": CoCa's attentional pooler) and the report
    decoder (model.decoder) with unimodal_depth >= 1 text-only blocks."""

    Config = CocaConfig
    batch_coupled = True
    default_evaluators = ("zeroshot_retrieval", "generation")

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        if getattr(config.model.decoder, "unimodal_depth", 0) < 1:
            raise ConfigError("objective.name=coca reads its text embedding from unimodal decoder blocks; "
                              "set model.decoder.unimodal_depth >= 1")

    def build_model(self, rngs: nnx.Rngs) -> CoCa:
        return CoCa(self.config.model, self.vocab_size, self.config.data.max_text_len, image_shape(self.config),
                    rngs=rngs, channels=image_channels(self.config))

    def forward(self, model: CoCa, batch: Batch, extra: dict) -> Outputs:
        return model(batch["image"], batch["tokens"])

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        cfg = self.cfg
        return coca_loss(outputs, CONTRASTIVE_LOSSES[cfg.contrastive], contrastive_weight=cfg.contrastive_weight,
                         caption_weight=cfg.caption_weight, label_smoothing=cfg.label_smoothing)

    def flops(self) -> StepFlops:
        """The image tower with its pooling head, the decoder over L + 1 inputs (the last one,
        at EOS, gives the text embedding), both projections and the (B, B) logits."""
        image, decoder = generative_tower_costs(self.config, self.vocab_size, self.config.data.max_text_len + 1)
        batch, embed = self.config.batch_size, self.config.model.embed_dim
        per_example = (image.blocks_flops + image.head_flops + decoder.blocks_flops + decoder.head_flops
                       + 2 * (image.width + decoder.width) * embed)
        policy = remat_policy_name(self.config.model.remat)
        return step_flops(batch, input_flops=image.input_flops, differentiable=per_example,
                          coupled=2 * batch * batch * embed,
                          recompute=image.recompute_flops(policy) + decoder.recompute_flops(policy))

    def activation_bytes_per_example(self) -> float:
        length = self.config.data.max_text_len + 1
        image, decoder = generative_tower_costs(self.config, self.vocab_size, length)
        return stacks_activation_bytes((*image.stacks, *decoder.stacks), self.config,
                                       extra_saved=vocabulary_head_bytes(length, self.vocab_size))
