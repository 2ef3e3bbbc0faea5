"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup"): exact full-batch contrastive gradients at a microbatch's activation memory.

A contrastive loss couples every example to every other one, so plain accumulation would
shrink the pool of negatives to a microbatch. Instead, inside one jitted step:

1. embed the global batch microbatch by microbatch without keeping activations;
2. compute the loss and its gradient w.r.t. the model outputs on the full batch;
3. re-run each microbatch's forward pass with a VJP seeded by its slice of those output
   gradients, and sum the parameter gradients.

The forward pass runs twice (pass 2 recomputes pass 1), and it must be deterministic
(no dropout), which holds for the towers here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from radfm_jax.train.accumulate import (
    Batch,
    Metrics,
    Params,
    ValueAndGrad,
    merge_microbatches,
    split_microbatches,
    zeros_like_tree,
)

Outputs = dict[str, jax.Array]


def grad_cache_value_and_grad(
    forward: Callable[[Params, Batch], Outputs],
    loss_fn: Callable[[Outputs], tuple[jax.Array, Metrics]],
    steps: int,
    *,
    microbatch_sharding: NamedSharding | None = None,
    grad_shardings: Any | None = None,
) -> ValueAndGrad:
    """`value_and_grad` of ``loss_fn(forward(params, batch))`` in `steps` microbatches.

    `forward` returns a dict whose leaves are either per-example arrays (leading batch
    dimension: the embeddings) or scalars shared by the whole batch (the logit scale and
    bias, which depend on parameters only). The loss, metrics and gradients are those of the
    full batch, including the gradients of the shared scalars' parameters.
    """

    def value_and_grad(params: Params, batch: Batch):
        micro = split_microbatches(batch, steps, microbatch_sharding)

        # Pass 1: outputs only. Nothing here is differentiated, so no activations are kept.
        def embed(carry, microbatch):
            return carry, jax.lax.stop_gradient(forward(params, microbatch))

        _, stacked = jax.lax.scan(embed, None, micro)
        outputs = jax.tree.map(_unstack, stacked)
        # Integer outputs (CoCa's caption targets) are data, not functions of the parameters.
        constants = {k: v for k, v in outputs.items() if not jnp.issubdtype(v.dtype, jnp.inexact)}

        def loss_of_floats(floats: Outputs):
            return loss_fn({**floats, **constants})

        (loss, aux), output_grads = jax.value_and_grad(loss_of_floats, has_aux=True)(_floats(outputs))
        seeds = jax.tree.map(lambda g: _split_seed(g, steps, microbatch_sharding), output_grads)

        # Pass 2: each microbatch's backward pass, seeded with its share of the output grads.
        def backward(total, inputs):
            microbatch, seed = inputs
            _, pullback = jax.vjp(lambda p: _floats(forward(p, microbatch)), params)
            (grads,) = pullback(seed)
            return jax.tree.map(jnp.add, total, grads), None

        grads, _ = jax.lax.scan(backward, zeros_like_tree(params, grad_shardings), (micro, seeds))
        return (loss, aux), grads

    return value_and_grad


def _floats(outputs: Outputs) -> Outputs:
    return {k: v for k, v in outputs.items() if jnp.issubdtype(v.dtype, jnp.inexact)}


def _unstack(stacked: jax.Array) -> jax.Array:
    """A leaf stacked over microbatches back to its full-batch value."""
    if stacked.ndim == 1:  # a shared scalar, equal in every microbatch
        return stacked[0]
    return merge_microbatches(stacked)


def _split_seed(grad: jax.Array, steps: int, sharding: NamedSharding | None) -> jax.Array:
    """The output gradient as one cotangent per microbatch. A shared scalar is an output of
    every microbatch's forward pass, so each gets 1/steps of its gradient (they add up)."""
    if grad.ndim == 0:
        return jnp.broadcast_to(grad / steps, (steps,))
    return split_microbatches(grad, steps, sharding)
