"""Vision Transformer image tower (2D; patchify works for any number of spatial dims and per-axis
patch sizes)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import non_negative, positive
from radfm_jax.config.schema import ImageTowerConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params, map_head_flops
from radfm_jax.models.layers import (
    Activation,
    Attention,
    Dtype,
    LoraSpec,
    Mlp,
    Transformer,
    check_heads,
    dense,
    layer_norm,
    param,
)


@dataclasses.dataclass(frozen=True)
class ViTConfig(ImageTowerConfig):
    """A ViT. Use radfm_jax.config.presets.vit(...) for the named sizes Ti / S / B / L."""

    name: Literal["vit"] = dataclasses.field(default="vit", init=False)
    patch_size: int = positive(8)
    width: int = positive(192)
    depth: int = positive(12)
    heads: int = positive(3)
    mlp_ratio: float = positive(4.0)
    pool: Literal["cls", "mean", "map"] = "mean"  # map = multihead attention pooling
    # Variants published checkpoints use (OpenAI / Hugging Face CLIP: quick_gelu, 1e-5, a
    # LayerNorm on the embedded tokens before the first block).
    act: Activation = "gelu_tanh"
    norm_eps: float = positive(1e-6)
    norm_pre: bool = False
    # > 0: per-channel scales on each block's residual branches, initialised to this (DINOv2:
    # 1e-5 for training; imported checkpoints bring their own); 0 = none.
    layer_scale: float = non_negative(0.0)


def patchify(x: jax.Array, patch_size: int | tuple[int, ...]) -> jax.Array:
    """(B, *spatial, C) -> (B, num_patches, prod(patch) * C), row-major patches.

    `patch_size` is one size for every spatial axis or one per axis (3D tubelets (pd, ph, pw)).
    Each patch is flattened as (p_1, ..., p_n, C), the same layout for 2D images and 3D volumes.
    """
    b, *spatial, c = x.shape
    n = len(spatial)
    patch = (patch_size,) * n if isinstance(patch_size, int) else tuple(patch_size)
    if len(patch) != n:
        raise ValueError(f"patch {patch} does not match the {n} spatial axes of input size {tuple(spatial)}")
    if any(s % p for s, p in zip(spatial, patch)):
        raise ValueError(f"input size {tuple(spatial)} is not divisible by patch {patch_size}")
    grid = [s // p for s, p in zip(spatial, patch)]
    x = x.reshape(b, *[d for g, p in zip(grid, patch) for d in (g, p)], c)
    x = x.transpose(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    return x.reshape(b, math.prod(grid), math.prod(patch) * c)


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

    Input (B, *image_shape, C) float32 images; output (B, width) float32. pool="cls" prepends a
    learned cls token and returns its final state.
    """

    Config = ViTConfig

    def __init__(
        self,
        cfg: ViTConfig,
        image_shape: tuple[int, ...],
        *,
        channels: int = 1,
        dtype: Dtype = jnp.float32,
        scan_layers: bool = True,
        remat: bool | str = False,
        rngs: nnx.Rngs,
        lora: LoraSpec | None = None,
    ):
        """`lora`: low-rank adapters on the blocks' projections (fine-tuning)."""
        self.check(cfg, image_shape)
        self.patch_size = cfg.patch_size
        self.pool = cfg.pool
        self.width = cfg.width
        self.norm_pre_used = cfg.norm_pre
        self.num_patches = self.num_patches_of(cfg, image_shape)
        self.grid = tuple(size // cfg.patch_size for size in image_shape)
        width, mlp_dim = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.patch_dim = self.patch_dim_of(cfg, image_shape, channels)
        self.patch_embed = dense(self.patch_dim, width, ("patch", "embed"), dtype=dtype, rngs=rngs)
        self.pos_emb = param(
            nnx.initializers.normal(0.02), (self.num_tokens(cfg, image_shape), width), ("seq", "embed"), rngs
        )
        if cfg.pool == "cls":
            self.cls_token = param(nnx.initializers.zeros_init(), (width,), ("embed",), rngs)
        if cfg.norm_pre:
            self.norm_pre = layer_norm(width, rngs, cfg.norm_eps)
        self.encoder = Transformer(
            width, cfg.depth, cfg.heads, mlp_dim, dtype=dtype, scan_layers=scan_layers, remat=remat, rngs=rngs,
            lora=lora, act=cfg.act, norm_eps=cfg.norm_eps, layer_scale=cfg.layer_scale,
        )
        self.norm = layer_norm(width, rngs, cfg.norm_eps)
        if cfg.pool == "map":
            self.map_head = MapHead(width, cfg.heads, mlp_dim, dtype=dtype, rngs=rngs)

    # --- what the tower declares ------------------------------------------------------------

    @staticmethod
    def check(cfg: ViTConfig, image_shape: tuple[int, ...], key: str = "model.image") -> None:
        check_heads(cfg.width, cfg.heads, key)
        if any(size % cfg.patch_size for size in image_shape):
            raise ConfigError(f"the input size {tuple(image_shape)} (data.input_size) is not divisible by "
                              f"{key}.patch_size={cfg.patch_size}")

    @staticmethod
    def mask_tube(cfg: ViTConfig, image_shape: tuple[int, ...]) -> int:
        """Tokens MAE hides or keeps together: each patch on its own."""
        return 1

    @staticmethod
    def num_patches_of(cfg: ViTConfig, image_shape: tuple[int, ...]) -> int:
        return math.prod(size // cfg.patch_size for size in image_shape)

    @staticmethod
    def patch_dim_of(cfg: ViTConfig, image_shape: tuple[int, ...], channels: int = 1) -> int:
        """Values in one flattened patch (what MAE's pixel decoder predicts per patch)."""
        return cfg.patch_size ** len(image_shape) * channels

    @classmethod
    def num_tokens(cls, cfg: ViTConfig, image_shape: tuple[int, ...]) -> int:
        """Tokens the encoder blocks see: one per patch, plus the cls token."""
        return cls.num_patches_of(cfg, image_shape) + (cfg.pool == "cls")

    @classmethod
    def costs(cls, cfg: ViTConfig, image_shape: tuple[int, ...], channels: int = 1, *,
              patches: int | None = None) -> TowerCosts:
        """Per example forward: the patch embedding of every patch, the blocks over `patches`
        of them (default all: MAE's encoder sees a subset) and the pooling head."""
        all_patches = cls.num_patches_of(cfg, image_shape)
        tokens = (all_patches if patches is None else patches) + (cfg.pool == "cls")
        mlp_dim = int(cfg.width * cfg.mlp_ratio)
        patch_embed = 2 * all_patches * cls.patch_dim_of(cfg, image_shape, channels) * cfg.width
        head = map_head_flops(tokens, cfg.width, mlp_dim) if cfg.pool == "map" else 0.0
        return TowerCosts(width=cfg.width, input_flops=float(patch_embed),
                          stacks=(BlockStack(tokens, cfg.width, mlp_dim, cfg.heads, cfg.depth),),
                          head_flops=float(head))

    @classmethod
    def param_count(cls, cfg: ViTConfig, image_shape: tuple[int, ...], channels: int = 1) -> int:
        w, m = cfg.width, int(cfg.width * cfg.mlp_ratio)
        patch_embed = (cls.patch_dim_of(cfg, image_shape, channels) + 1) * w
        position = cls.num_tokens(cfg, image_shape) * w + (w if cfg.pool == "cls" else 0)
        head = w + block_params(w, m) - 2 * w if cfg.pool == "map" else 0  # probe, attention, norm, MLP
        norms = 2 * w * (1 + cfg.norm_pre)
        scales = cfg.depth * 2 * w * (cfg.layer_scale > 0)
        return patch_embed + position + cfg.depth * block_params(w, m) + scales + norms + head

    # --- the forward pass -------------------------------------------------------------------

    def patch_positions(self, grid: tuple[int, ...]) -> jax.Array:
        """(prod(grid), width) position embeddings of the patches of an input whose patch grid
        is `grid`: the learned ones, resized (bicubic) when the grid is not the tower's own, as
        multi-crop training (DINO's smaller local views) and other input sizes need."""
        pos = self.pos_emb[...]
        pos = pos[1:] if self.pool == "cls" else pos
        if tuple(grid) == self.grid:
            return pos
        resized = jax.image.resize(pos.reshape(*self.grid, -1), (*grid, pos.shape[-1]), method="bicubic")
        return resized.reshape(-1, pos.shape[-1])

    def embed_patches(self, images: jax.Array, mask: jax.Array | None = None,
                      mask_token: jax.Array | None = None) -> jax.Array:
        """(B, *spatial, C) -> (B, N, width) patch tokens with their position embeddings (no cls);
        where `mask` (B, N) is True the patch is replaced by `mask_token` (width,) first (iBOT's
        masked student views)."""
        # The residual stream is float32; blocks cast to the compute dtype for their matmuls.
        x = self.patch_embed(patchify(images, self.patch_size)).astype(jnp.float32)
        if mask is not None:
            x = jnp.where(mask[..., None], mask_token.astype(jnp.float32), x)
        grid = tuple(size // self.patch_size for size in images.shape[1:-1])
        return x + self.patch_positions(grid)

    def encode(self, patch_tokens: jax.Array, *, tube_masked: bool = False) -> jax.Array:
        """Embedded patch tokens (all, or the visible subset under MAE) -> normalised encoder
        states (B, N', width), the cls state first when pool="cls". Any subset works, so
        `tube_masked` (vit3d's contract with MAE) changes nothing here."""
        x = patch_tokens
        if self.pool == "cls":
            cls = self.cls_token[...] + self.pos_emb[0]
            x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1])), x], axis=1)
        if self.norm_pre_used:
            x = self.norm_pre(x)
        return self.norm(self.encoder(x))

    def pool_states(self, x: jax.Array) -> jax.Array:
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "mean":
            return x.mean(axis=1)
        return self.map_head(x)

    def tokens(self, images: jax.Array) -> jax.Array:
        """(B, *spatial, C) -> (B, N', width) encoder states, what a decoder cross-attends to."""
        return self.encode(self.embed_patches(images))

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.pool_states(self.tokens(images))
