"""Gradient accumulation: a global batch processed in microbatches inside one jitted step.

For a loss that is a mean of per-example losses, the mean of the microbatch gradients equals
the full-batch gradient, so a large global batch fits in the memory of a small one. (For
contrastive losses, where examples are each other's negatives, see `grad_cache.py`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from radfm_jax.errors import ConfigError

Params = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
# (params, batch) -> ((loss, metrics), grads): what jax.value_and_grad(..., has_aux=True) returns.
ValueAndGrad = Callable[[Params, Batch], tuple[tuple[jax.Array, Metrics], Params]]


def check_microbatching(global_batch: int, steps: int, batch_shards: int) -> None:
    """Every microbatch must split evenly over the batch devices."""
    if steps < 1:
        raise ConfigError(f"optim.grad_accum_steps must be >= 1, got {steps}")
    if global_batch % (steps * batch_shards):
        raise ConfigError(
            f"batch_size={global_batch} cannot be split into optim.grad_accum_steps={steps} "
            f"microbatches over {batch_shards} batch devices; choose a batch size that is a "
            f"multiple of {steps * batch_shards}"
        )


def split_microbatches(tree: Any, steps: int, sharding: NamedSharding | None = None) -> Any:
    """Leaves (B, ...) -> (steps, B / steps, ...).

    Microbatch i holds examples i, i + steps, i + 2 * steps, ...: with the batch split into
    contiguous blocks over devices, every device keeps its own rows (no communication) and
    every microbatch is spread over all devices. `sharding` (for the stacked leaves, e.g.
    PartitionSpec(None, batch_axes)) pins that layout.
    """

    def split(x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)

    return jax.tree.map(split, tree)


def merge_microbatches(tree: Any) -> Any:
    """The inverse of :func:`split_microbatches`: (steps, B / steps, ...) -> (B, ...)."""
    return jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(-1, *x.shape[2:]), tree)


def zeros_like_tree(abstract: Any, shardings: Any | None = None) -> Any:
    """Accumulators for `abstract` (shapes), laid out like `shardings` when given."""
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)
    if shardings is None:
        return zeros
    return jax.lax.with_sharding_constraint(zeros, shardings)


def accumulated_value_and_grad(
    compute_loss: Callable[[Params, Batch], tuple[jax.Array, Metrics]],
    steps: int,
    *,
    microbatch_sharding: NamedSharding | None = None,
    grad_shardings: Any | None = None,
) -> ValueAndGrad:
    """`jax.value_and_grad(compute_loss, has_aux=True)` over `steps` equal microbatches.

    `compute_loss` must be a mean of per-example losses; then the averaged loss and gradients
    equal the full batch's. Metrics are averaged over the microbatches. Activations of one
    microbatch at a time are alive (a `lax.scan`), gradients accumulate in float32.
    """
    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    def value_and_grad(params: Params, batch: Batch):
        micro = split_microbatches(batch, steps, microbatch_sharding)
        first = jax.tree.map(lambda x: x[0], micro)
        (loss_shape, aux_shape), _ = jax.eval_shape(grad_fn, params, first)
        init = (
            zeros_like_tree((loss_shape, aux_shape)),
            zeros_like_tree(params, grad_shardings),
        )

        def add_microbatch(total, microbatch):
            value, grads = grad_fn(params, microbatch)
            return jax.tree.map(jnp.add, total, (value, grads)), None

        (value, grads), _ = jax.lax.scan(add_microbatch, init, micro)
        return jax.tree.map(lambda x: x / steps, (value, grads))

    return value_and_grad
