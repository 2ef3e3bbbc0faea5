"""Autoregressive report decoder: causal self-attention, optional cross-attention to image
tokens, and a key-value cache for generation.

Teacher forcing reads ``decoder_inputs(tokens)`` = [START] + tokens (START = the pad id 0, as
T5 starts its decoder; the tokenizer has no BOS), so the output at position i predicts token i
and the output at the EOS input is a summary of the whole text (CoCa's text embedding).
Generation feeds START at position 0 and one token per step through `step`, whose cache holds
every layer's keys and values (and the cross-attention keys / values of the image tokens,
computed once); every cache leaf has the batch on axis 0 (radfm_jax/models/decoding.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import non_negative, positive
from radfm_jax.config.schema import ReportDecoderConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params
from radfm_jax.models.layers import (
    Attention,
    Dtype,
    Mlp,
    Transformer,
    check_heads,
    dense,
    layer_norm,
    named,
    param,
)

START_ID = 0  # the pad id doubles as the decoder's start token

Cache = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TextDecoderConfig(ReportDecoderConfig):
    """A pre-norm transformer report decoder: `unimodal_depth` causal text-only blocks (CoCa's
    text encoder), then blocks that also cross-attend to the image tokens."""

    name: Literal["transformer"] = dataclasses.field(default="transformer", init=False)
    width: int = positive(128)
    depth: int = positive(2)
    heads: int = positive(4)
    mlp_ratio: float = positive(4.0)
    unimodal_depth: int = non_negative(0)  # at most depth (checked with the tower)


def decoder_inputs(tokens: jax.Array) -> jax.Array:
    """(B, L) target ids -> (B, L + 1) inputs [START] + tokens."""
    start = jnp.full((tokens.shape[0], 1), START_ID, tokens.dtype)
    return jnp.concatenate([start, tokens], axis=1)


def causal_mask(length: int, parallel: jax.Array | None = None) -> jax.Array:
    """(B or 1, L, L) True where query i may attend key j: j <= i, or everywhere for rows
    trained by parallel prediction (CapPa)."""
    causal = jnp.tril(jnp.ones((length, length), bool))[None]
    if parallel is None:
        return causal
    return causal | parallel[:, None, None]


class DecoderBlock(nnx.Module):
    """Pre-norm block: causal self-attention, cross-attention to the context (when
    `context_width` is set), MLP. Same constructor as layers.Block, so layers.Transformer
    stacks and scans it."""

    def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs,
                 context_width: int | None = None):
        self.norm1 = layer_norm(width, rngs)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.cross = context_width is not None
        if self.cross:
            self.norm_cross = layer_norm(width, rngs)
            self.cross_attn = Attention(width, heads, dtype=dtype, rngs=rngs, kv_width=context_width)
        self.norm2 = layer_norm(width, rngs)
        self.mlp = Mlp(width, mlp_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, context: jax.Array | None) -> jax.Array:
        x = x + self.attn(self.norm1(x), mask=mask)
        if self.cross:
            x = x + self.cross_attn(self.norm_cross(x), kv=context)
        return x + self.mlp(self.norm2(x))

    def init_cache(self, context: jax.Array | None, batch: int, length: int) -> Cache:
        heads, head_dim = self.attn.key.kernel.shape[1:]
        zeros = jnp.zeros((batch, length, heads, head_dim), jnp.float32)
        cache = {"k": zeros, "v": zeros}
        if self.cross:
            cache["context_k"], cache["context_v"] = self.cross_attn.project_kv(context)
        return cache

    def step(self, x: jax.Array, cache: Cache, position: jax.Array) -> tuple[jax.Array, Cache]:
        """x (B, 1, width) at `position`: append its key / value, attend to positions <= it."""
        h = self.norm1(x)
        k, v = self.attn.project_kv(h)
        index = (0, position, 0, 0)
        cache = {**cache,
                 "k": jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), index),
                 "v": jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), index)}
        visible = jnp.arange(cache["k"].shape[1]) <= position
        mask = jnp.broadcast_to(visible, (x.shape[0], cache["k"].shape[1]))
        x = x + self.attn.attend(h, cache["k"], cache["v"], mask)
        if self.cross:
            x = x + self.cross_attn.attend(self.norm_cross(x), cache["context_k"], cache["context_v"])
        return x + self.mlp(self.norm2(x)), cache


class DecoderStack(nnx.Module):
    """`depth` DecoderBlocks (scanned or unrolled, with remat) and their generation cache."""

    def __init__(self, cfg: TextDecoderConfig, depth: int, context_width: int | None, *, dtype: Dtype,
                 scan_layers: bool, remat: bool | str, rngs: nnx.Rngs):
        self.layers = Transformer(
            cfg.width, depth, cfg.heads, int(cfg.width * cfg.mlp_ratio), dtype=dtype,
            scan_layers=scan_layers, remat=remat, rngs=rngs,
            block=functools.partial(DecoderBlock, context_width=context_width),
        )

    def __call__(self, x: jax.Array, mask: jax.Array, context: jax.Array | None) -> jax.Array:
        return self.layers(x, mask, context)

    def init_cache(self, context: jax.Array | None, batch: int, length: int) -> Cache:
        """Batch-first leaves (B, depth, ...)."""
        if self.layers.scan_layers:
            stacked = nnx.vmap(lambda block: block.init_cache(context, batch, length), in_axes=0,
                               out_axes=1)(self.layers.layers)
            return stacked
        caches = [block.init_cache(context, batch, length) for block in self.layers.layers]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=1), *caches)

    def step(self, x: jax.Array, cache: Cache, position: jax.Array) -> tuple[jax.Array, Cache]:
        layers_first = jax.tree.map(lambda leaf: jnp.swapaxes(leaf, 0, 1), cache)
        x, layers_first = self.layers.step(x, layers_first, position)
        return x, jax.tree.map(lambda leaf: jnp.swapaxes(leaf, 0, 1), layers_first)


class TextDecoder(nnx.Module):
    """Token + position embedding, `unimodal_depth` causal text-only blocks, then the blocks
    with cross-attention to the image tokens, final norm and the vocabulary head.

    A captioner has no unimodal blocks; CoCa reads its text embedding from the unimodal
    output at the EOS input. CapPa's parallel prediction replaces a row's inputs by a learned
    mask embedding and lifts its causal mask.
    """

    Config = TextDecoderConfig

    def __init__(self, cfg: TextDecoderConfig, vocab_size: int, max_len: int, context_width: int, *,
                 dtype: Dtype, scan_layers: bool, remat: bool | str, rngs: nnx.Rngs):
        self.check(cfg)
        width = cfg.width
        self.max_inputs = max_len + 1
        self.token_emb = nnx.Embed(
            vocab_size, width, dtype=jnp.float32, param_dtype=jnp.float32,
            embedding_init=named(nnx.initializers.normal(0.02), ("vocab", "embed")), rngs=rngs,
        )
        self.pos_emb = param(nnx.initializers.normal(0.01), (self.max_inputs, width), ("seq", "embed"), rngs)
        self.mask_emb = param(nnx.initializers.normal(0.02), (width,), ("embed",), rngs)
        common = dict(dtype=dtype, scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.unimodal = (DecoderStack(cfg, cfg.unimodal_depth, None, **common)
                         if cfg.unimodal_depth else None)
        self.multimodal = DecoderStack(cfg, cfg.depth - cfg.unimodal_depth, context_width, **common)
        self.norm = layer_norm(width, rngs)
        self.head = dense(width, vocab_size, ("embed", "vocab"), dtype=dtype, rngs=rngs)

    @staticmethod
    def check(cfg: TextDecoderConfig, key: str = "model.decoder") -> None:
        check_heads(cfg.width, cfg.heads, key)
        if not 0 <= cfg.unimodal_depth <= cfg.depth:
            raise ConfigError(f"{key}.unimodal_depth={cfg.unimodal_depth} must be between 0 and "
                              f"{key}.depth={cfg.depth}")

    @staticmethod
    def costs(cfg: TextDecoderConfig, length: int, vocab_size: int, context_tokens: int,
              context_width: int) -> TowerCosts:
        """Per example forward over `length` inputs: causal blocks (computed in full and
        masked), cross-attention in the multimodal blocks, the vocabulary head."""
        mlp_dim = int(cfg.width * cfg.mlp_ratio)
        stacks = (BlockStack(length, cfg.width, mlp_dim, cfg.heads, cfg.depth - cfg.unimodal_depth,
                             context_tokens, context_width),)
        if cfg.unimodal_depth:
            stacks = (BlockStack(length, cfg.width, mlp_dim, cfg.heads, cfg.unimodal_depth), *stacks)
        return TowerCosts(width=cfg.width, input_flops=0.0, stacks=stacks, head_flops=float(2 * length * cfg.width * vocab_size))

    @staticmethod
    def param_count(cfg: TextDecoderConfig, vocab_size: int, max_len: int, context_width: int) -> int:
        w, m = cfg.width, int(cfg.width * cfg.mlp_ratio)
        embeddings = vocab_size * w + (max_len + 1) * w + w  # tokens, positions, CapPa's mask
        blocks = (cfg.unimodal_depth * block_params(w, m)
                  + (cfg.depth - cfg.unimodal_depth) * block_params(w, m, context_width))
        return embeddings + blocks + 2 * w + (w + 1) * vocab_size

    def embed(self, inputs: jax.Array, parallel: jax.Array | None = None) -> jax.Array:
        length = inputs.shape[1]
        if length > self.max_inputs:
            raise ValueError(f"{length} decoder inputs exceed max_len + 1 = {self.max_inputs}")
        x = self.token_emb(inputs)
        if parallel is not None:
            x = jnp.where(parallel[:, None, None], self.mask_emb[...], x)
        return x + self.pos_emb[:length]

    def unimodal_states(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        return x if self.unimodal is None else self.unimodal(x, mask, None)

    def logits(self, x: jax.Array, mask: jax.Array, context: jax.Array) -> jax.Array:
        """Multimodal blocks over unimodal states -> (B, L, vocab) float32 logits."""
        x = self.multimodal(x, mask, context)
        return self.head(self.norm(x)).astype(jnp.float32)

    def __call__(self, inputs: jax.Array, context: jax.Array, parallel: jax.Array | None = None) -> jax.Array:
        mask = causal_mask(inputs.shape[1], parallel)
        return self.logits(self.unimodal_states(self.embed(inputs, parallel), mask), mask, context)

    def init_cache(self, context: jax.Array, length: int) -> Cache:
        batch = context.shape[0]
        cache = {"multimodal": self.multimodal.init_cache(context, batch, length)}
        if self.unimodal is not None:
            cache["unimodal"] = self.unimodal.init_cache(None, batch, length)
        return cache

    def step(self, tokens: jax.Array, position: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        """tokens (B,) at `position` -> next-token logits (B, vocab) float32 and the new cache."""
        x = self.token_emb(tokens[:, None]) + jax.lax.dynamic_slice_in_dim(self.pos_emb[...], position, 1)[None]
        new = {}
        if self.unimodal is not None:
            x, new["unimodal"] = self.unimodal.step(x, cache["unimodal"], position)
        x, new["multimodal"] = self.multimodal.step(x, cache["multimodal"], position)
        return self.head(self.norm(x))[:, 0].astype(jnp.float32), new
