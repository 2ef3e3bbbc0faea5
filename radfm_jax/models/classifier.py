"""Multi-label classifier for fine-tuning: the image tower (optionally with low-rank adapters)
and a linear head, one logit per label."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.layers import LoraSpec, param
from radfm_jax.models.towers import build_image_tower


class Classifier(nnx.Module):
    """`image` is model.image's tower, at the path pretraining models keep it (so a pretrained
    tower loads by name); `head` starts at zero, so every label starts at probability 1/2."""

    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, ...], num_labels: int, *, rngs: nnx.Rngs,
                 lora: LoraSpec | None = None, channels: int = 1):
        self.image = build_image_tower(cfg, image_shape, rngs, channels=channels, lora=lora)
        width = self.image.width
        self.head_kernel = param(nnx.initializers.zeros_init(), (width, num_labels), ("embed", None), rngs)
        self.head_bias = param(nnx.initializers.zeros_init(), (num_labels,), (None,), rngs)

    def image_features(self, images: jax.Array) -> jax.Array:
        """Pooled tower output (B, width): what the head (and a linear probe) reads."""
        return self.image(images)

    def classify(self, images: jax.Array) -> jax.Array:
        """(B, *spatial, C) images -> (B, labels) float32 logits."""
        features = self.image_features(images).astype(jnp.float32)
        return features @ self.head_kernel[...] + self.head_bias[...]

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.classify(images)
