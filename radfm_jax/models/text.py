"""Bidirectional transformer text tower over report token ids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import TextTowerConfig
from radfm_jax.models.layers import Dtype, Transformer, layer_norm, named, param

PAD_ID = 0
EOS_ID = 2  # the tokenizer's (radfm_jax/data/tokenizer.py): ends every encoded text


class TextTransformer(nnx.Module):
    """Token + learned position embedding, pre-norm blocks with a key padding mask, final norm.

    Input (B, L) int token ids, L <= max_len, right-padded with PAD_ID (0). Output (B, width)
    float32: pool="eos" takes the last non-pad token (the tokenizer appends EOS), pool="mean"
    averages the non-pad tokens.
    """

    def __init__(
        self,
        cfg: TextTowerConfig,
        vocab_size: int,
        max_len: int,
        *,
        dtype: Dtype = jnp.float32,
        scan_layers: bool = True,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if cfg.pool not in ("eos", "mean"):
            raise ValueError(f"unknown text pool {cfg.pool!r}; use 'eos' or 'mean'")
        self.pool = cfg.pool
        self.token_emb = nnx.Embed(
            vocab_size,
            cfg.width,
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            embedding_init=named(nnx.initializers.normal(0.02), ("vocab", "embed")),
            rngs=rngs,
        )
        self.pos_emb = param(
            nnx.initializers.normal(0.01), (max_len, cfg.width), ("seq", "embed"), rngs
        )
        self.encoder = Transformer(
            cfg.width,
            cfg.depth,
            cfg.heads,
            int(cfg.width * cfg.mlp_ratio),
            dtype=dtype,
            scan_layers=scan_layers,
            remat=remat,
            rngs=rngs,
        )
        self.norm = layer_norm(cfg.width, rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        length = tokens.shape[1]
        if length > self.pos_emb.shape[0]:
            raise ValueError(f"{length} tokens exceed max_len {self.pos_emb.shape[0]}")
        mask = tokens != PAD_ID
        x = self.token_emb(tokens) + self.pos_emb[:length]
        x = self.norm(self.encoder(x, mask))
        if self.pool == "eos":
            last = jnp.max(jnp.where(mask, jnp.arange(length), 0), axis=1)
            return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        valid = mask[..., None].astype(x.dtype)
        return (x * valid).sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1.0)
