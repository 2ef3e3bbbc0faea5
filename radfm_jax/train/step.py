"""The one step builder: (state, batch) -> (state, metrics) with explicit shardings and
donation, for any objective; training runs it, `radfm compile` compiles it ahead of time, the
benchmarks time it (all through train/experiment.py)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.objectives.base import Objective
from radfm_jax.parallel.activations import activation_sharding
from radfm_jax.parallel.mesh import BATCH_AXES, batch_sharding
from radfm_jax.train.accumulate import (
    ValueAndGrad,
    accumulated_value_and_grad,
    check_microbatching,
)
from radfm_jax.train.grad_cache import grad_cache_value_and_grad
from radfm_jax.train.state import StateLayout, TrainState


@dataclasses.dataclass(frozen=True)
class StepFunction:
    """A pure function plus how to compile it; `.jit()` is what training runs and what
    `jax.jit(...).lower(...)` AOT compiles."""

    fn: Callable[..., Any]
    in_shardings: Any
    out_shardings: Any
    donate_argnums: tuple[int, ...]

    def jit(self) -> Callable[..., Any]:
        return jax.jit(
            self.fn,
            in_shardings=self.in_shardings,
            out_shardings=self.out_shardings,
            donate_argnums=self.donate_argnums,
        )


class CompiledStep:
    """A step compiled at its first call from that call's arguments (the real first batch fixes
    every shape), then run as that executable; `.compiled` exposes it, so XLA's cost analysis
    of the step training runs comes without a second compilation."""

    def __init__(self, step: StepFunction):
        self._jitted = step.jit()
        self.compiled: Any = None

    def __call__(self, state: Any, batch: dict[str, jax.Array]) -> Any:
        if self.compiled is None:
            self.compiled = self._jitted.lower(state, batch).compile()
        return self.compiled(state, batch)


def batch_shardings(mesh: Mesh, keys: tuple[str, ...]) -> dict[str, NamedSharding]:
    """Every batch entry split over the batch axes along its leading dimension."""
    return {key: batch_sharding(mesh) for key in keys}


def build_train_step(
    layout: StateLayout,
    tx: optax.GradientTransformation,
    objective: Objective,
    lr_schedule: optax.Schedule,
    mesh: Mesh,
    *,
    grad_accum_steps: int = 1,
    seed: int = 0,
) -> StepFunction:
    """One optimizer update of `objective` on a global batch of `objective.batch_spec()`.

    Per-example random inputs (`objective.draw_inputs`) are keyed by (seed, step), so a
    resumed run draws exactly what the uninterrupted one did. With `grad_accum_steps` > 1 the
    batch is processed in that many microbatches inside the step, with the same result as one
    pass: a batch-coupled (contrastive) loss uses GradCache; otherwise the loss must be a mean
    of per-example losses and the microbatch gradients are averaged. After the update the
    objective's extra state follows the new parameters (`objective.update_extra`).
    """
    batch_shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    microbatched = {
        "microbatch_sharding": NamedSharding(mesh, PartitionSpec(None, BATCH_AXES)),
        "grad_shardings": layout.shardings.params,
    }

    def frozen_out(params: dict) -> dict:
        """Frozen parameters enter the forward pass as constants: no gradient is computed for them."""
        if objective.trainable is None:
            return params
        return jax.tree.map(lambda p, keep: p if keep else jax.lax.stop_gradient(p), params,
                            objective.trainable(params))

    def value_and_grad_fn(extra: Any) -> ValueAndGrad:
        def forward(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            return objective.forward(layout.model.merge(frozen_out(params)), batch, extra)

        def compute_loss(params: dict, batch: dict[str, jax.Array]):
            return objective.loss(forward(params, batch))

        if grad_accum_steps == 1:
            return jax.value_and_grad(compute_loss, has_aux=True)
        if objective.batch_coupled:
            return grad_cache_value_and_grad(forward, objective.loss, grad_accum_steps, **microbatched)
        return accumulated_value_and_grad(compute_loss, grad_accum_steps, **microbatched)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        global_batch = next(iter(batch.values())).shape[0]
        check_microbatching(global_batch, grad_accum_steps, batch_shards)
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        drawn = objective.draw_inputs(key, global_batch)
        if drawn:
            batch = {**batch, **jax.lax.with_sharding_constraint(drawn, batch_shardings(mesh, tuple(drawn)))}
        with activation_sharding(mesh):
            (loss, aux), grads = value_and_grad_fn(state.extra)(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": lr_schedule(state.step),
            **aux,
        }
        # The loss's "_"-prefixed outputs are batch statistics the extra state follows (DINO's
        # centres), not metrics.
        signals = {key: metrics.pop(key) for key in [key for key in metrics if key.startswith("_")]}
        extra = objective.update_extra(state.extra, params, state.step, signals)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state, extra=extra), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return StepFunction(
        fn=train_step,
        in_shardings=(layout.shardings, batch_shardings(mesh, tuple(objective.batch_spec()))),
        out_shardings=(layout.shardings, replicated),
        donate_argnums=(0,),
    )
