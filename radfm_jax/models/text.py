"""Bidirectional transformer text tower over report token ids."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import positive
from radfm_jax.config.schema import TextTowerConfig
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params
from radfm_jax.models.layers import Activation, Dtype, Transformer, check_heads, layer_norm, named, param

PAD_ID = 0
EOS_ID = 2  # the tokenizer's (radfm_jax/data/tokenizer.py): ends every encoded text


@dataclasses.dataclass(frozen=True)
class TextTransformerConfig(TextTowerConfig):
    """A pre-norm transformer over report tokens (bidirectional unless `causal`); the vocabulary
    size comes from the tokenizer."""

    name: Literal["transformer"] = dataclasses.field(default="transformer", init=False)
    width: int = positive(192)
    depth: int = positive(4)
    heads: int = positive(3)
    mlp_ratio: float = positive(4.0)
    pool: Literal["eos", "mean"] = "eos"
    # Variants published checkpoints use: CLIP's text tower is causal (each token attends to
    # itself and the tokens before it) and pools the EOS token, with quick_gelu and 1e-5.
    causal: bool = False
    act: Activation = "gelu_tanh"
    norm_eps: float = positive(1e-6)


class TextTransformer(nnx.Module):
    """Token + learned position embedding, pre-norm blocks with a key padding mask, final norm.

    Input (B, L) int token ids, L <= max_len, right-padded with PAD_ID (0). Output (B, width)
    float32: pool="eos" takes the last non-pad token (the tokenizer appends EOS), pool="mean"
    averages the non-pad tokens.
    """

    Config = TextTransformerConfig

    def __init__(
        self,
        cfg: TextTransformerConfig,
        vocab_size: int,
        max_len: int,
        *,
        dtype: Dtype = jnp.float32,
        scan_layers: bool = True,
        remat: bool | str = False,
        rngs: nnx.Rngs,
    ):
        self.check(cfg)
        self.pool = cfg.pool
        self.width = cfg.width
        self.causal = cfg.causal
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
            act=cfg.act,
            norm_eps=cfg.norm_eps,
        )
        self.norm = layer_norm(cfg.width, rngs, cfg.norm_eps)

    @staticmethod
    def check(cfg: TextTransformerConfig, key: str = "model.text") -> None:
        check_heads(cfg.width, cfg.heads, key)

    @staticmethod
    def costs(cfg: TextTransformerConfig, length: int) -> TowerCosts:
        """Per example forward over `length` tokens (padding included: it is computed and
        masked, not skipped). The embedding lookup is a gather: no FLOPs."""
        stack = BlockStack(length, cfg.width, int(cfg.width * cfg.mlp_ratio), cfg.heads, cfg.depth)
        return TowerCosts(width=cfg.width, input_flops=0.0, stacks=(stack,))

    @staticmethod
    def param_count(cfg: TextTransformerConfig, vocab_size: int, max_len: int) -> int:
        w = cfg.width
        return (vocab_size + max_len) * w + cfg.depth * block_params(w, int(w * cfg.mlp_ratio)) + 2 * w

    def __call__(self, tokens: jax.Array) -> jax.Array:
        length = tokens.shape[1]
        if length > self.pos_emb.shape[0]:
            raise ValueError(f"{length} tokens exceed max_len {self.pos_emb.shape[0]}")
        mask = tokens != PAD_ID
        x = self.token_emb(tokens) + self.pos_emb[:length]
        attend = mask
        if self.causal:  # (B, Lq, Lk): earlier, non-pad keys only
            attend = mask[:, None, :] & jnp.tril(jnp.ones((length, length), bool))[None]
        x = self.norm(self.encoder(x, attend))
        if self.pool == "eos":
            last = jnp.max(jnp.where(mask, jnp.arange(length), 0), axis=1)
            return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        valid = mask[..., None].astype(x.dtype)
        return (x * valid).sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1.0)
