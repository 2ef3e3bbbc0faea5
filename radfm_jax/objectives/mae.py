"""Masked-autoencoder pixel loss (He et al. 2022): mean squared error on the hidden patches,
against pixels normalised per patch (norm_pix_loss) or raw."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def normalize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Each patch (last axis) to zero mean and unit variance, as the MAE paper's targets."""
    mean = patches.mean(axis=-1, keepdims=True)
    var = patches.var(axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(var + eps)


def mae_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, *, norm_pix: bool = True) -> tuple[jax.Array, Metrics]:
    """pred, target (B, N, P) patches, mask (B, N) 1 = hidden -> mean over the batch of each
    example's mean squared error on its hidden patches (a per-example mean, so gradient
    accumulation over microbatches is exact)."""
    target = target.astype(jnp.float32)
    if norm_pix:
        target = normalize_patches(target)
    per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
    hidden = mask.astype(jnp.float32)
    per_example = jnp.sum(per_patch * hidden, axis=1) / jnp.maximum(jnp.sum(hidden, axis=1), 1.0)
    visible_error = jnp.sum(per_patch * (1 - hidden)) / jnp.maximum(jnp.sum(1 - hidden), 1.0)
    return per_example.mean(), {"visible_patch_error": visible_error}
