"""Self-distillation model (DINO, Caron et al. 2021; DINOv2, Oquab et al. 2024; RAD-DINO): a ViT
image tower with a class token, a mask token for iBOT's masked views, and the DINO projection
head (MLP -> L2-normalised bottleneck -> a weight-normalised layer onto `prototypes` logits),
shared by the class token (DINO loss) and the patch tokens (iBOT loss). The EMA teacher is
the same model with other parameters (objectives/dino.py keeps them in the train state)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.layers import ACTIVATIONS, Dtype, dense, param
from radfm_jax.models.towers import build_image_tower


class DinoHead(nnx.Module):
    """width -> hidden -> hidden -> bottleneck (GELU between), L2-normalised, then a linear map
    whose prototype columns are normalised to unit length (DINO's weight norm with its scale
    fixed at 1), so the logits are cosine similarities."""

    def __init__(self, width: int, hidden: int, bottleneck: int, prototypes: int, *, dtype: Dtype, rngs: nnx.Rngs):
        self.fc1 = dense(width, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.fc2 = dense(hidden, hidden, ("mlp", None), dtype=dtype, rngs=rngs)
        self.fc3 = dense(hidden, bottleneck, ("mlp", "embed"), dtype=dtype, rngs=rngs)
        # sharded like a vocabulary projection: DINOv2's has 65,536 prototypes
        self.prototypes = param(nnx.initializers.normal(1.0), (bottleneck, prototypes), ("embed", "vocab"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        gelu = ACTIVATIONS["gelu"]
        x = self.fc3(gelu(self.fc2(gelu(self.fc1(x))))).astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))
        w = self.prototypes[...]
        w = w * jax.lax.rsqrt(jnp.maximum(jnp.sum(w * w, 0, keepdims=True), 1e-12))
        return x @ w


class DinoModel(nnx.Module):
    def __init__(self, cfg: ModelConfig, image_shape: tuple[int, ...], *, hidden: int, bottleneck: int,
                 prototypes: int, rngs: nnx.Rngs, channels: int = 1):
        self.image = build_image_tower(cfg, image_shape, rngs, channels=channels)
        self.mask_token = param(nnx.initializers.zeros_init(), (self.image.width,), ("embed",), rngs)
        self.head = DinoHead(self.image.width, hidden, bottleneck, prototypes, dtype=jnp.dtype(cfg.compute_dtype),
                             rngs=rngs)

    def __call__(self, views: jax.Array, mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """views (B, V, *spatial, C), any square size; mask (B, V, N) True = a patch replaced by
        the mask token -> the class tokens' features (B, V, width) and logits (B, V, K), and
        with a mask the patch tokens' logits (B, V, N, K)."""
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:])
        flat_mask = None if mask is None else mask.reshape(b * v, -1)
        states = self.image.encode(self.image.embed_patches(flat, flat_mask, self.mask_token[...]))
        cls = states[:, 0]
        out = {"features": cls.reshape(b, v, -1), "cls_logits": self.head(cls).reshape(b, v, -1)}
        if mask is not None:
            patches = self.head(states[:, 1:])
            out["patch_logits"] = patches.reshape(b, v, *patches.shape[1:])
        return out

    def image_features(self, images: jax.Array) -> jax.Array:
        """The tower's class token (B, width): what a linear probe reads."""
        return self.image(images)
