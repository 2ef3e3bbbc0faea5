"""BERT-family text tower (CXR-BERT, PubMedBERT, BiomedCLIP's text encoder): word + position +
token-type embeddings, an embedding LayerNorm, post-norm blocks, pooled at the first token
([CLS]) or averaged over the non-pad tokens."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import positive
from radfm_jax.config.schema import TextTowerConfig
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params
from radfm_jax.models.layers import (
    Activation,
    Dtype,
    PostNormBlock,
    Transformer,
    check_heads,
    layer_norm,
    named,
    param,
)
from radfm_jax.models.text import PAD_ID


@dataclasses.dataclass(frozen=True)
class BertConfig(TextTowerConfig):
    """A BERT encoder over report tokens; the vocabulary comes from the tokenizer (a BERT
    checkpoint's own tokenizer.json: data.tokenizer_file)."""

    name: Literal["bert"] = dataclasses.field(default="bert", init=False)
    width: int = positive(768)
    depth: int = positive(12)
    heads: int = positive(12)
    mlp_ratio: float = positive(4.0)
    pool: Literal["cls", "mean"] = "cls"
    act: Activation = "gelu"
    norm_eps: float = positive(1e-12)
    type_vocab_size: int = positive(2)  # segment embeddings; single texts use segment 0


class BertTextTower(nnx.Module):
    """Input (B, L) int token ids right-padded with PAD_ID (0, BERT's [PAD]); output (B, width)."""

    Config = BertConfig

    def __init__(self, cfg: BertConfig, vocab_size: int, max_len: int, *, dtype: Dtype = jnp.float32,
                 scan_layers: bool = True, remat: bool | str = False, rngs: nnx.Rngs):
        self.check(cfg)
        self.pool = cfg.pool
        self.width = cfg.width
        embed = named(nnx.initializers.normal(0.02), ("vocab", "embed"))
        self.token_emb = nnx.Embed(vocab_size, cfg.width, dtype=jnp.float32, param_dtype=jnp.float32,
                                   embedding_init=embed, rngs=rngs)
        self.pos_emb = param(nnx.initializers.normal(0.02), (max_len, cfg.width), ("seq", "embed"), rngs)
        self.type_emb = param(nnx.initializers.normal(0.02), (cfg.type_vocab_size, cfg.width), (None, "embed"), rngs)
        self.embed_norm = layer_norm(cfg.width, rngs, cfg.norm_eps)
        self.encoder = Transformer(cfg.width, cfg.depth, cfg.heads, int(cfg.width * cfg.mlp_ratio), dtype=dtype,
                                   scan_layers=scan_layers, remat=remat, rngs=rngs, block=PostNormBlock,
                                   act=cfg.act, norm_eps=cfg.norm_eps)

    @staticmethod
    def check(cfg: BertConfig, key: str = "model.text") -> None:
        check_heads(cfg.width, cfg.heads, key)

    @staticmethod
    def costs(cfg: BertConfig, length: int) -> TowerCosts:
        stack = BlockStack(length, cfg.width, int(cfg.width * cfg.mlp_ratio), cfg.heads, cfg.depth)
        return TowerCosts(width=cfg.width, input_flops=0.0, stacks=(stack,))

    @staticmethod
    def param_count(cfg: BertConfig, vocab_size: int, max_len: int) -> int:
        w = cfg.width
        embeddings = (vocab_size + max_len + cfg.type_vocab_size) * w + 2 * w
        return embeddings + cfg.depth * block_params(w, int(w * cfg.mlp_ratio))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        length = tokens.shape[1]
        if length > self.pos_emb.shape[0]:
            raise ValueError(f"{length} tokens exceed max_len {self.pos_emb.shape[0]}")
        mask = tokens != PAD_ID
        x = self.token_emb(tokens) + self.pos_emb[:length] + self.type_emb[0]
        x = self.encoder(self.embed_norm(x), mask)
        if self.pool == "cls":
            return x[:, 0]
        valid = mask[..., None].astype(x.dtype)
        return (x * valid).sum(axis=1) / jnp.maximum(valid.sum(axis=1), 1.0)
