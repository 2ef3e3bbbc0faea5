"""The named predict functions evaluators receive (DESIGN.md: evaluators never reach into a
model). Each takes the params pytree first and is compiled once by the trainer; a model
without such a head leaves it None."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Predictors:
    # (params, images (B, H, W, C)) -> unit embeddings (B, D) in the contrastive space.
    encode_image: Callable[[Params, jax.Array], jax.Array] | None = None
    # (params, tokens (B, L)) -> unit embeddings (B, D).
    encode_text: Callable[[Params, jax.Array], jax.Array] | None = None
    # params -> the contrastive logit scale (a Python float).
    logit_scale: Callable[[Params], float] | None = None
    # (params, images) -> pooled image-tower features (B, width), for linear probes.
    image_features: Callable[[Params, jax.Array], jax.Array] | None = None
    # (params, images, key) -> generated token ids (B, L), EOS then pad ids after each report.
    generate: Callable[[Params, jax.Array, jax.Array], jax.Array] | None = None
    # (params, images) -> one logit per label (B, labels), a fine-tuned classifier's.
    classify: Callable[[Params, jax.Array], jax.Array] | None = None
