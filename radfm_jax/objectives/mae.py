"""Masked image modelling (MAE, He et al. 2022): the image tower encodes a random quarter of
the patches, a pixel decoder predicts the rest; the loss is the mean squared error on the
hidden patches, against pixels normalised per patch (norm_pix_loss) or raw."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import ranged
from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.models.costs import F32, TowerCosts
from radfm_jax.models.layers import remat_policy_name
from radfm_jax.models.mae import MaskedAutoencoder, visible_count
from radfm_jax.models.towers import IMAGE_TOWERS, PIXEL_DECODERS
from radfm_jax.objectives.base import (
    Batch,
    BatchField,
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
class MaeConfig(ObjectiveConfig):
    name: Literal["mae"] = dataclasses.field(default="mae", init=False)
    mask_ratio: float = ranged(0.75, gt=0, lt=1)  # fraction of patches hidden from the encoder
    norm_pix_loss: bool = True  # targets: each patch's pixels normalised to zero mean, unit variance


def normalize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Each patch (last axis) to zero mean and unit variance, as the MAE paper's targets."""
    mean = patches.mean(axis=-1, keepdims=True)
    var = patches.var(axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(var + eps)


def mae_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, *, norm_pix: bool = True) -> tuple[jax.Array, Metrics]:
    """pred, target (B, N, P) patches, mask (B, N) 1 = hidden -> mean over the batch of each
    example's mean squared error on its hidden patches (a per-example mean, so gradient
    accumulation over microbatches is exact)."""
    target = target.astype(jnp.float32)
    if norm_pix:
        target = normalize_patches(target)
    per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
    hidden = mask.astype(jnp.float32)
    per_example = jnp.sum(per_patch * hidden, axis=1) / jnp.maximum(jnp.sum(hidden, axis=1), 1.0)
    visible_error = jnp.sum(per_patch * (1 - hidden)) / jnp.maximum(jnp.sum(1 - hidden), 1.0)
    return per_example.mean(), {"visible_patch_error": visible_error}


class Mae(Objective):
    """The image tower (model.image) as MAE encoder and the pixel decoder (model.mae_decoder)."""

    Config = MaeConfig
    default_evaluators = ("linear_probe",)
    image_tower_path = ("encoder",)

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        check_fraction("objective.mask_ratio", config.objective.mask_ratio, low=0.0, high=1.0,
                       open_low=True, open_high=True)

    def build_model(self, rngs: nnx.Rngs) -> MaskedAutoencoder:
        return MaskedAutoencoder(self.config.model, image_shape(self.config), mask_ratio=self.cfg.mask_ratio,
                                 rngs=rngs, channels=image_channels(self.config))

    def batch_spec(self) -> dict[str, BatchField]:
        return {"image": super().batch_spec()["image"]}

    def _patches(self) -> tuple[int, int]:
        """(patches per image, values per patch) of the image tower."""
        image, shape = self.config.model.image, image_shape(self.config)
        tower = IMAGE_TOWERS[image.name]
        return tower.num_patches_of(image, shape), tower.patch_dim_of(image, shape, image_channels(self.config))

    def _tube(self) -> int:
        """Patches hidden or kept together (a tube through every depth for volumes)."""
        image = self.config.model.image
        return IMAGE_TOWERS[image.name].mask_tube(image, image_shape(self.config))

    def draw_inputs(self, key: jax.Array, batch_size: int) -> Batch:
        # One draw per tube, repeated along depth: depth-major tokens put tube t at t, t + N/tube, ...
        tube = self._tube()
        noise = jax.random.uniform(key, (batch_size, self._patches()[0] // tube))
        return {"mae_noise": jnp.tile(noise, (1, tube))}

    def forward(self, model: MaskedAutoencoder, batch: Batch, extra: dict) -> Outputs:
        return model(batch["image"], batch["mae_noise"])

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        return mae_loss(outputs["pred"], outputs["target"], outputs["mask"], norm_pix=self.cfg.norm_pix_loss)

    def tower_costs(self) -> tuple[TowerCosts, TowerCosts]:
        """The encoder on the visible patches (no pooling head: MAE trains without it) and the
        pixel decoder."""
        model, shape = self.config.model, image_shape(self.config)
        patches, patch_dim = self._patches()
        keep = visible_count(patches, self.cfg.mask_ratio, self._tube())
        encoder = IMAGE_TOWERS[model.image.name].costs(model.image, shape, image_channels(self.config), patches=keep)
        encoder = dataclasses.replace(encoder, head_flops=0.0)
        decoder = PIXEL_DECODERS[model.mae_decoder.name].costs(model.mae_decoder, patches, keep, encoder.width,
                                                               patch_dim)
        return encoder, decoder

    def flops(self) -> StepFlops:
        encoder, decoder = self.tower_costs()
        policy = remat_policy_name(self.config.model.remat)
        return step_flops(self.config.batch_size, input_flops=encoder.input_flops,
                          differentiable=encoder.blocks_flops + decoder.blocks_flops + decoder.head_flops,
                          recompute=encoder.recompute_flops(policy) + decoder.recompute_flops(policy))

    def activation_bytes_per_example(self) -> float:
        encoder, decoder = self.tower_costs()
        # The loss keeps the predicted and the normalised target pixels of every patch.
        patches, patch_dim = self._patches()
        return stacks_activation_bytes((*encoder.stacks, *decoder.stacks), self.config,
                                       extra_saved=2 * patches * patch_dim * F32)
