"""Image-report two-tower model for CLIP-style (softmax) and SigLIP-style (sigmoid) losses."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.layers import dense, param
from radfm_jax.models.towers import build_image_tower, build_text_tower

MAX_LOGIT_SCALE = 100.0


def l2_normalize(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


class TwoTower(nnx.Module):
    """Image tower + text tower (model.image, model.text), each projected to `embed_dim` and
    L2-normalised.

    Also holds a learnable log logit scale (temperature) and a learnable logit bias (SigLIP).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        vocab_size: int,
        max_text_len: int,
        image_shape: tuple[int, ...],
        rngs: nnx.Rngs,
        *,
        channels: int = 1,
    ):
        self.image = build_image_tower(cfg, image_shape, rngs, channels=channels)
        self.text = build_text_tower(cfg, vocab_size, max_text_len, rngs)
        proj = functools.partial(dense, names=("embed", "proj"), dtype=jnp.dtype(cfg.compute_dtype),
                                 use_bias=False)
        self.image_proj = proj(self.image.width, cfg.embed_dim, rngs=rngs)
        self.text_proj = proj(self.text.width, cfg.embed_dim, rngs=rngs)
        constant = nnx.initializers.constant
        self.log_logit_scale = param(constant(math.log(cfg.init_temperature)), (), (), rngs)
        self.logit_bias = param(constant(cfg.init_bias), (), (), rngs)

    def encode_image(self, images: jax.Array) -> jax.Array:
        """(B, *spatial, 1) float32 images -> (B, embed_dim) L2-normalised float32 embeddings."""
        return l2_normalize(self.image_proj(self.image(images)))

    def image_features(self, images: jax.Array) -> jax.Array:
        """Pooled image tower output before the projection (B, width): what a linear probe reads."""
        return self.image(images)

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        """(B, L) int tokens (0 = pad) -> (B, embed_dim) L2-normalised float32 embeddings."""
        return l2_normalize(self.text_proj(self.text(tokens)))

    def __call__(self, images: jax.Array, tokens: jax.Array) -> dict[str, jax.Array]:
        return dict(
            image_emb=self.encode_image(images),
            text_emb=self.encode_text(tokens),
            logit_scale=jnp.minimum(jnp.exp(self.log_logit_scale[...]), MAX_LOGIT_SCALE),
            logit_bias=self.logit_bias[...],
        )
