"""Report generators: a captioner (ViT encoder + cross-attending text decoder; CapPa when
trained with parallel prediction) and CoCa (the same plus a contrastive head on a MAP-pooled
image embedding and the decoder's unimodal text embedding at EOS)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.decoder import Cache, causal_mask, decoder_inputs
from radfm_jax.models.layers import dense, layer_norm, param
from radfm_jax.models.text import EOS_ID
from radfm_jax.models.towers import build_image_tower, build_report_decoder
from radfm_jax.models.two_tower import MAX_LOGIT_SCALE, l2_normalize


class Captioner(nnx.Module):
    """The image tower (model.image) and the report decoder (model.decoder) cross-attending to
    its tokens."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, max_text_len: int, image_shape: tuple[int, ...],
                 rngs: nnx.Rngs, *, channels: int = 1):
        self.image = build_image_tower(cfg, image_shape, rngs, channels=channels)
        self.decoder = build_report_decoder(cfg, vocab_size, max_text_len, self.image.width, rngs)
        self.max_text_len = max_text_len

    def context(self, images: jax.Array) -> jax.Array:
        """The image tokens the decoder cross-attends to."""
        return self.image.tokens(images)

    def __call__(self, images: jax.Array, tokens: jax.Array, parallel: jax.Array | None = None) -> dict[str, jax.Array]:
        """Teacher forcing: logits (B, L, vocab) predicting `tokens` (B, L)."""
        logits = self.decoder(decoder_inputs(tokens)[:, :-1], self.context(images), parallel)
        return {"logits": logits, "targets": tokens}

    def image_features(self, images: jax.Array) -> jax.Array:
        return self.image.pool_states(self.context(images))

    def init_cache(self, images: jax.Array) -> Cache:
        return self.decoder.init_cache(self.context(images), self.max_text_len)

    def decode_step(self, tokens: jax.Array, position: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        return self.decoder.step(tokens, position, cache)


def decode_step_fn(model: Captioner) -> Callable[[jax.Array, jax.Array, Cache], tuple[jax.Array, Cache]]:
    """`model.decode_step` as a function that is safe inside JAX control flow (the decoding
    while-loop): the module is rebuilt from its state at the loop body's trace level, as NNX's
    scanned layers require."""
    graphdef, state = nnx.split(model)

    def step(tokens: jax.Array, position: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        fresh = jax.tree.map(lambda x: x, state)  # new Variables, created at this trace level
        return nnx.merge(graphdef, fresh).decode_step(tokens, position, cache)

    return step


class CoCa(Captioner):
    """Captioner + contrastive head: image embedding from the ViT's pooling (use pool="map",
    CoCa's attentional pooler), text embedding from the unimodal decoder blocks at the EOS
    input (causal, so it has read the whole report); one decoder pass serves both losses."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, max_text_len: int, image_shape: tuple[int, ...],
                 rngs: nnx.Rngs, *, channels: int = 1):
        super().__init__(cfg, vocab_size, max_text_len, image_shape, rngs, channels=channels)
        dtype = jnp.dtype(cfg.compute_dtype)
        proj = functools.partial(dense, names=("embed", "proj"), dtype=dtype, use_bias=False)
        self.image_proj = proj(self.image.width, cfg.embed_dim, rngs=rngs)
        self.text_norm = layer_norm(cfg.decoder.width, rngs)
        self.text_proj = proj(cfg.decoder.width, cfg.embed_dim, rngs=rngs)
        constant = nnx.initializers.constant
        self.log_logit_scale = param(constant(math.log(cfg.init_temperature)), (), (), rngs)
        self.logit_bias = param(constant(cfg.init_bias), (), (), rngs)

    def _text_embedding(self, unimodal: jax.Array, tokens: jax.Array) -> jax.Array:
        # Input position of the (first) EOS: 1 + its index among the targets.
        eos = jnp.argmax(tokens == EOS_ID, axis=1) + 1
        state = jnp.take_along_axis(unimodal, eos[:, None, None], axis=1)[:, 0]
        return l2_normalize(self.text_proj(self.text_norm(state)))

    def _unimodal(self, tokens: jax.Array) -> jax.Array:
        inputs = decoder_inputs(tokens)
        mask = causal_mask(inputs.shape[1])
        return self.decoder.unimodal_states(self.decoder.embed(inputs), mask), mask

    def __call__(self, images: jax.Array, tokens: jax.Array, parallel: jax.Array | None = None) -> dict[str, jax.Array]:
        context = self.context(images)
        unimodal, mask = self._unimodal(tokens)
        # The multimodal blocks read all L + 1 positions; the last one predicts nothing.
        logits = self.decoder.logits(unimodal, mask, context)[:, :-1]
        return {
            "logits": logits,
            "targets": tokens,
            "image_emb": l2_normalize(self.image_proj(self.image.pool_states(context))),
            "text_emb": self._text_embedding(unimodal, tokens),
            "logit_scale": jnp.minimum(jnp.exp(self.log_logit_scale[...]), MAX_LOGIT_SCALE),
            "logit_bias": self.logit_bias[...],
        }

    def encode_image(self, images: jax.Array) -> jax.Array:
        return l2_normalize(self.image_proj(self.image_features(images)))

    def encode_text(self, tokens: jax.Array) -> jax.Array:
        unimodal, _ = self._unimodal(tokens)
        return self._text_embedding(unimodal, tokens)
