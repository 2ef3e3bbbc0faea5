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
from radfm_jax.models.towers import IMAGE_TOWERS, PIXEL_DECODERS, build_image_tower, tower_options
from radfm_jax.models.vit import patchify


def visible_count(num_patches: int, mask_ratio: float, tube: int = 1) -> int:
    """Patches the encoder sees: whole tubes of `tube` tokens (the tower's mask_tube)."""
    return tube * max(1, int(round(num_patches // tube * (1.0 - mask_ratio))))


def mask_order(noise: jax.Array, keep: int, tube: int) -> jax.Array:
    """(B, N) noise, constant along each tube -> a permutation of the N patches per example:
    the `keep` visible ones first (depth-major under tube masking, as vit3d's encode needs
    them), then the hidden ones. Tokens are depth-major, so tube t is patches t, t + N/tube, ..."""
    if tube == 1:
        return jnp.argsort(noise, axis=1)
    b, n = noise.shape
    per_slice = n // tube
    tubes = jnp.argsort(noise[:, :per_slice], axis=1)  # (B, N / tube), visible tubes first
    offsets = jnp.arange(tube)[None, :, None] * per_slice
    visible = (offsets + tubes[:, None, : keep // tube]).reshape(b, keep)
    hidden = (offsets + tubes[:, None, keep // tube:]).reshape(b, n - keep)
    return jnp.concatenate([visible, hidden], axis=1)


class MaskedAutoencoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, ...], *, mask_ratio: float,
                 rngs: nnx.Rngs, channels: int = 1):
        """The image tower `cfg.image` as the encoder and the pixel decoder `cfg.mae_decoder`."""
        self.encoder = build_image_tower(cfg, image_shape, rngs, channels=channels)
        self.num_patches = self.encoder.num_patches
        self.tube = IMAGE_TOWERS[cfg.image.name].mask_tube(cfg.image, image_shape)
        self.keep = visible_count(self.num_patches, mask_ratio, self.tube)
        self.patch_size = self.encoder.patch_size
        self.decoder = PIXEL_DECODERS[cfg.mae_decoder.name](
            cfg.mae_decoder, self.num_patches, self.encoder.width, self.encoder.patch_dim,
            **tower_options(cfg), rngs=rngs)

    def __call__(self, images: jax.Array, noise: jax.Array) -> dict[str, jax.Array]:
        """images (B, *spatial, C), noise (B, N) uniform, constant along each mask tube ->
        predicted and true patches (B, N, P) and the mask (B, N), 1 where a patch was hidden."""
        tokens = self.encoder.embed_patches(images)
        order = mask_order(noise, self.keep, self.tube)
        restore = jnp.argsort(order, axis=1)
        visible = jnp.take_along_axis(tokens, order[:, : self.keep, None], axis=1)
        encoded = self.encoder.encode(visible, tube_masked=True)
        if self.encoder.pool == "cls":
            encoded = encoded[:, 1:]
        mask = (restore >= self.keep).astype(jnp.float32)
        return {"pred": self.decoder(encoded, restore), "target": patchify(images, self.patch_size), "mask": mask}

    def image_features(self, images: jax.Array) -> jax.Array:
        """Pooled encoder output on every patch (B, width): what a linear probe reads."""
        return self.encoder(images)
