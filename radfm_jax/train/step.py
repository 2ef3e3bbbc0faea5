"""The one step builder: (state, batch) -> (state, metrics) with explicit shardings and
donation, shared by training, evaluation and ahead-of-time compilation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.parallel.activations import activation_sharding
from radfm_jax.parallel.mesh import BATCH_AXES, batch_sharding
from radfm_jax.train.accumulate import (
    ValueAndGrad,
    accumulated_value_and_grad,
    check_microbatching,
)
from radfm_jax.train.grad_cache import grad_cache_value_and_grad
from radfm_jax.train.state import StateLayout, TrainState

LossFn = Callable[[dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]
# (model, batch) -> outputs the loss reads.
Forward = Callable[[Any, dict[str, jax.Array]], dict[str, jax.Array]]
# (key, global batch size) -> per-example random inputs (MAE masks, CapPa rows) added to the
# batch before it is split into microbatches, so accumulation draws what the full batch would.
DrawInputs = Callable[[jax.Array, int], dict[str, jax.Array]]


def two_tower_forward(model: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return model(batch["image"], batch["tokens"])

# What a contrastive train batch holds; every key is split over the batch axes.
TRAIN_BATCH_KEYS = ("image", "tokens", "labels")


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


def batch_shardings(mesh: Mesh, keys: tuple[str, ...] = TRAIN_BATCH_KEYS) -> dict[str, NamedSharding]:
    return {key: batch_sharding(mesh) for key in keys}


def build_train_step(
    layout: StateLayout,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    lr_schedule: optax.Schedule,
    mesh: Mesh,
    *,
    grad_accum_steps: int = 1,
    batch_coupled_loss: bool = True,
    forward: Forward = two_tower_forward,
    draw_inputs: DrawInputs | None = None,
    seed: int = 0,
) -> StepFunction:
    """One optimizer update on a global batch.

    `forward` maps the model and batch to the outputs `loss_fn` reads; `draw_inputs`, when
    given, adds per-example random inputs keyed by (seed, step), so a resumed run draws
    exactly what the uninterrupted one did.

    With `grad_accum_steps` > 1 the batch is processed in that many microbatches inside the
    step, with the same result as one pass: a `batch_coupled_loss` (contrastive: every example
    is a negative of the others) uses GradCache; otherwise the loss must be a mean of
    per-example losses and the microbatch gradients are averaged.
    """

    def forward_params(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return forward(layout.model.merge(params), batch)

    def compute_loss(params: dict, batch: dict[str, jax.Array]):
        return loss_fn(forward_params(params, batch))

    if grad_accum_steps == 1:
        value_and_grad: ValueAndGrad = jax.value_and_grad(compute_loss, has_aux=True)
    else:
        microbatched = {
            "microbatch_sharding": NamedSharding(mesh, PartitionSpec(None, BATCH_AXES)),
            "grad_shardings": layout.shardings.params,
        }
        if batch_coupled_loss:
            value_and_grad = grad_cache_value_and_grad(forward_params, loss_fn, grad_accum_steps, **microbatched)
        else:
            value_and_grad = accumulated_value_and_grad(compute_loss, grad_accum_steps, **microbatched)
    batch_shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        check_microbatching(batch["image"].shape[0], grad_accum_steps, batch_shards)
        if draw_inputs is not None:
            key = jax.random.fold_in(jax.random.key(seed), state.step)
            drawn = draw_inputs(key, batch["image"].shape[0])
            batch = {**batch, **jax.lax.with_sharding_constraint(drawn, {k: batch_sharding(mesh) for k in drawn})}
        with activation_sharding(mesh):
            (loss, aux), grads = value_and_grad(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": lr_schedule(state.step),
            **aux,
        }
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return StepFunction(
        fn=train_step,
        in_shardings=(layout.shardings, batch_shardings(mesh)),
        out_shardings=(layout.shardings, replicated),
        donate_argnums=(0,),
    )
