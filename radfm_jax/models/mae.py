"""Masked autoencoder (He et al. 2022): the image tower's encoder sees a random subset of
patches, a light pixel decoder fills in mask tokens and predicts every patch's pixels.

Patches are flattened by `vit.patchify`, which is the same for (H, W) images and (D, H, W)
volumes, so any image tower with the ViT interface (`embed_patches`, `encode`, `patch_size`,
`num_patches`, `width`, `pool`) is trained by this module unchanged. Which patches are hidden
comes in as per-example uniform noise (the lowest `keep` scores are visible), drawn by the
train step, so a microbatched step masks exactly as the full batch would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.towers import PIXEL_DECODERS, build_image_tower, tower_options
from radfm_jax.models.vit import patchify


def visible_count(num_patches: int, mask_ratio: float) -> int:
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


class MaskedAutoencoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, ...], *, mask_ratio: float,
                 rngs: nnx.Rngs):
        """The image tower `cfg.image` as the encoder and the pixel decoder `cfg.mae_decoder`."""
        self.encoder = build_image_tower(cfg, image_shape, rngs)
        self.num_patches = self.encoder.num_patches
        self.keep = visible_count(self.num_patches, mask_ratio)
        self.patch_size = self.encoder.patch_size
        self.decoder = PIXEL_DECODERS[cfg.mae_decoder.name](
            cfg.mae_decoder, self.num_patches, self.encoder.width, self.encoder.patch_dim,
            **tower_options(cfg), rngs=rngs)

    def __call__(self, images: jax.Array, noise: jax.Array) -> dict[str, jax.Array]:
        """images (B, *spatial, C), noise (B, N) uniform -> predicted and true patches (B, N, P)
        and the mask (B, N), 1 where a patch was hidden."""
        tokens = self.encoder.embed_patches(images)
        order = jnp.argsort(noise, axis=1)  # visible patches first
        restore = jnp.argsort(order, axis=1)
        visible = jnp.take_along_axis(tokens, order[:, : self.keep, None], axis=1)
        encoded = self.encoder.encode(visible)
        if self.encoder.pool == "cls":
            encoded = encoded[:, 1:]
        mask = (restore >= self.keep).astype(jnp.float32)
        return {"pred": self.decoder(encoded, restore), "target": patchify(images, self.patch_size), "mask": mask}

    def image_features(self, images: jax.Array) -> jax.Array:
        """Pooled encoder output on every patch (B, width): what a linear probe reads."""
        return self.encoder(images)
