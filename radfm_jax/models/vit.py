"""Vision Transformer image tower (2D; patchify works for any number of spatial dims)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ImageTowerConfig
from radfm_jax.models.layers import (
    Attention,
    Dtype,
    Mlp,
    Transformer,
    dense,
    layer_norm,
    param,
)


def patchify(x: jax.Array, patch_size: int) -> jax.Array:
    """(B, *spatial, C) -> (B, num_patches, patch_size**len(spatial) * C), row-major patches.

    Each patch is flattened as (p, ..., p, C), the same layout for 2D images and 3D volumes.
    """
    b, *spatial, c = x.shape
    if any(s % patch_size for s in spatial):
        raise ValueError(f"input size {tuple(spatial)} is not divisible by patch {patch_size}")
    grid = [s // patch_size for s in spatial]
    n = len(spatial)
    x = x.reshape(b, *[d for g in grid for d in (g, patch_size)], c)
    x = x.transpose(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    return x.reshape(b, math.prod(grid), patch_size**n * c)


class MapHead(nnx.Module):
    """Multihead attention pooling with a learned probe (big_vision MAPHead)."""

    def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs):
        self.probe = param(nnx.initializers.normal(0.02), (width,), ("embed",), rngs)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(width, rngs)
        self.mlp = Mlp(width, mlp_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        probe = jnp.broadcast_to(self.probe[...], (x.shape[0], 1, x.shape[-1]))
        y = self.attn(probe, kv=x).astype(jnp.float32)
        y = y + self.mlp(self.norm(y))
        return y[:, 0]


class ViT(nnx.Module):
    """Patch embedding + learned position embedding + pre-norm blocks + final norm + pooling.

    Input (B, H, W, C) float32 images with H = W = image_size; output (B, width) float32.
    pool="cls" prepends a learned cls token and returns its final state.
    """

    def __init__(
        self,
        cfg: ImageTowerConfig,
        image_size: int,
        *,
        channels: int = 1,
        dtype: Dtype = jnp.float32,
        scan_layers: bool = True,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if cfg.pool not in ("cls", "mean", "map"):
            raise ValueError(f"unknown image pool {cfg.pool!r}; use 'cls', 'mean' or 'map'")
        if image_size % cfg.patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by {cfg.patch_size}")
        self.patch_size = cfg.patch_size
        self.pool = cfg.pool
        width, mlp_dim = cfg.width, int(cfg.width * cfg.mlp_ratio)
        num_tokens = (image_size // cfg.patch_size) ** 2 + (cfg.pool == "cls")
        patch_dim = cfg.patch_size**2 * channels
        self.patch_embed = dense(patch_dim, width, ("patch", "embed"), dtype=dtype, rngs=rngs)
        self.pos_emb = param(
            nnx.initializers.normal(0.02), (num_tokens, width), ("seq", "embed"), rngs
        )
        if cfg.pool == "cls":
            self.cls_token = param(nnx.initializers.zeros_init(), (width,), ("embed",), rngs)
        self.encoder = Transformer(
            width,
            cfg.depth,
            cfg.heads,
            mlp_dim,
            dtype=dtype,
            scan_layers=scan_layers,
            remat=remat,
            rngs=rngs,
        )
        self.norm = layer_norm(width, rngs)
        if cfg.pool == "map":
            self.map_head = MapHead(width, cfg.heads, mlp_dim, dtype=dtype, rngs=rngs)

    def embed_patches(self, images: jax.Array) -> jax.Array:
        """(B, H, W, C) -> (B, N, width) patch tokens with their position embeddings (no cls)."""
        # The residual stream is float32; blocks cast to the compute dtype for their matmuls.
        x = self.patch_embed(patchify(images, self.patch_size)).astype(jnp.float32)
        pos = self.pos_emb[...]
        return x + (pos[1:] if self.pool == "cls" else pos)

    def encode(self, patch_tokens: jax.Array) -> jax.Array:
        """Embedded patch tokens (all, or the visible subset under MAE) -> normalised encoder
        states (B, N', width), the cls state first when pool="cls"."""
        x = patch_tokens
        if self.pool == "cls":
            cls = self.cls_token[...] + self.pos_emb[0]
            x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1])), x], axis=1)
        return self.norm(self.encoder(x))

    def pool_states(self, x: jax.Array) -> jax.Array:
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "mean":
            return x.mean(axis=1)
        return self.map_head(x)

    def tokens(self, images: jax.Array) -> jax.Array:
        """(B, H, W, C) -> (B, N', width) encoder states, what a decoder cross-attends to."""
        return self.encode(self.embed_patches(images))

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.pool_states(self.tokens(images))
