"""Compiles a model's predict functions for evaluators and `radfm generate`: each one jitted
once with the train state's parameter shardings and batch-sharded inputs."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.config.schema import GenerateConfig
from radfm_jax.data.tokenizer import EOS_ID
from radfm_jax.evals.predictors import Params, Predictors
from radfm_jax.models import decoding
from radfm_jax.models.captioner import decode_step_fn
from radfm_jax.models.decoder import START_ID
from radfm_jax.parallel.activations import activation_sharding
from radfm_jax.parallel.mesh import batch_sharding
from radfm_jax.train.state import StateLayout


def decode_config(cfg: GenerateConfig, max_len: int) -> decoding.DecodeConfig:
    return decoding.DecodeConfig(method=cfg.method, beam_size=cfg.beam_size, temperature=cfg.temperature,
                                 top_p=cfg.top_p, length_penalty=cfg.length_penalty, max_len=max_len)


def build_predictors(layout: StateLayout, mesh: Mesh, generate: GenerateConfig, max_text_len: int) -> Predictors:
    data = batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    params_shardings = layout.shardings.params
    model_type = type(nnx.merge(layout.model.graphdef, layout.model.abstract_state))

    def batched(method: str):
        def fn(params: Params, inputs: jax.Array) -> jax.Array:
            with activation_sharding(mesh):
                return getattr(layout.model.merge(params), method)(inputs)

        return jax.jit(fn, in_shardings=(params_shardings, data), out_shardings=data)

    def logit_scale(params: Params) -> float:
        return float(min(np.exp(np.asarray(jax.device_get(params["log_logit_scale"]))), 100.0))

    config = decode_config(generate, max_text_len)

    def generate_tokens(params: Params, images: jax.Array, key: jax.Array) -> jax.Array:
        model = layout.model.merge(params)
        with activation_sharding(mesh):
            cache = model.init_cache(images)
        return decoding.decode(decode_step_fn(model), cache, config, batch_size=images.shape[0],
                               start_id=START_ID, eos_id=EOS_ID, key=key)

    has = lambda name: hasattr(model_type, name)
    return Predictors(
        encode_image=batched("encode_image") if has("encode_image") else None,
        encode_text=batched("encode_text") if has("encode_text") else None,
        logit_scale=logit_scale if has("encode_text") else None,
        image_features=batched("image_features") if has("image_features") else None,
        generate=(jax.jit(generate_tokens, in_shardings=(params_shardings, data, replicated), out_shardings=data)
                  if has("decode_step") else None),
        classify=batched("classify") if has("classify") else None,
    )
