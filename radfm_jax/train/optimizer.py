"""AdamW with linear warm-up, cosine decay and global-norm gradient clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from radfm_jax.config.schema import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )


def _decay_mask(params):
    # Decay matrices only: biases, norm scales, temperature and bias scalars stay undecayed.
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: OptimConfig, total_steps: int, *, trainable: Callable[[Any], Any] | None = None,
                   update_scale: Callable[[Any], Any] | None = None) -> optax.GradientTransformation:
    """AdamW with warm-up, cosine decay and clipping. `trainable(params)` -> a bool per leaf:
    frozen leaves get no update and no optimizer state; `update_scale(params)` -> a factor per
    leaf (a scalar, or an array broadcasting over a stacked leaf's layers axis) multiplying its
    updates: layer-wise learning-rate decay, or freezing some of a scanned stack's layers."""
    tx = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(
            learning_rate=learning_rate_schedule(cfg, total_steps),
            b1=cfg.b1,
            b2=cfg.b2,
            weight_decay=cfg.weight_decay,
            mask=_decay_mask,
        ),
    )
    if trainable is not None:
        def labels(params):
            return jax.tree.map(lambda keep: "train" if keep else "frozen", trainable(params))

        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    if update_scale is not None:
        tx = optax.chain(tx, _scale_updates(update_scale))
    return tx


def _scale_updates(scale: Callable[[Any], Any]) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scale(params)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
