"""Masked autoencoder (He et al. 2022): the ViT encoder sees a random subset of patches, a light
decoder fills in mask tokens and predicts every patch's pixels.

Patches are flattened by `vit.patchify`, which is the same for (H, W) images and (D, H, W)
volumes, so a 3D tower with the ViT interface (`embed_patches`, `encode`, `patch_size`) reuses
this module unchanged. Which patches are hidden comes in as per-example uniform noise (the
lowest `keep` scores are visible), drawn by the train step, so a microbatched step masks
exactly as the full batch would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import DecoderConfig, ImageTowerConfig
from radfm_jax.models.layers import Dtype, Transformer, dense, layer_norm, param
from radfm_jax.models.vit import ViT, patchify


def visible_count(num_patches: int, mask_ratio: float) -> int:
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


class MaskedAutoencoder(nnx.Module):
    def __init__(self, image: ImageTowerConfig, decoder: DecoderConfig, image_size: int, *,
                 mask_ratio: float, channels: int = 1, dtype: Dtype = jnp.float32,
                 scan_layers: bool = True, remat: bool | str = False, rngs: nnx.Rngs):
        self.encoder = ViT(image, image_size, channels=channels, dtype=dtype, scan_layers=scan_layers,
                           remat=remat, rngs=rngs)
        self.num_patches = (image_size // image.patch_size) ** 2
        self.keep = visible_count(self.num_patches, mask_ratio)
        self.patch_size = image.patch_size
        width = decoder.width
        self.decoder_embed = dense(image.width, width, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.mask_token = param(nnx.initializers.normal(0.02), (width,), ("embed",), rngs)
        self.decoder_pos = param(nnx.initializers.normal(0.02), (self.num_patches, width), ("seq", "embed"), rngs)
        self.decoder = Transformer(width, decoder.depth, decoder.heads, int(width * decoder.mlp_ratio),
                                   dtype=dtype, scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.decoder_norm = layer_norm(width, rngs)
        self.predict = dense(width, image.patch_size**2 * channels, ("embed", "patch"), dtype=dtype, rngs=rngs)

    def __call__(self, images: jax.Array, noise: jax.Array) -> dict[str, jax.Array]:
        """images (B, H, W, C), noise (B, N) uniform -> predicted and true patches (B, N, P)
        and the mask (B, N), 1 where a patch was hidden."""
        tokens = self.encoder.embed_patches(images)
        order = jnp.argsort(noise, axis=1)  # visible patches first
        restore = jnp.argsort(order, axis=1)
        visible = jnp.take_along_axis(tokens, order[:, : self.keep, None], axis=1)
        encoded = self.encoder.encode(visible)
        if self.encoder.pool == "cls":
            encoded = encoded[:, 1:]
        x = self.decoder_embed(encoded).astype(jnp.float32)
        hidden = jnp.broadcast_to(self.mask_token[...], (x.shape[0], self.num_patches - self.keep, x.shape[-1]))
        x = jnp.take_along_axis(jnp.concatenate([x, hidden], axis=1), restore[:, :, None], axis=1)
        x = self.decoder_norm(self.decoder(x + self.decoder_pos[...]))
        mask = (restore >= self.keep).astype(jnp.float32)
        return {"pred": self.predict(x).astype(jnp.float32), "target": patchify(images, self.patch_size),
                "mask": mask}

    def image_features(self, images: jax.Array) -> jax.Array:
        """Pooled encoder output on every patch (B, width): what a linear probe reads."""
        return self.encoder(images)
