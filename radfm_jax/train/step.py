"""The one step builder: (state, batch) -> (state, metrics) with explicit shardings and
donation, shared by training, evaluation and ahead-of-time compilation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.parallel.activations import activation_sharding
from radfm_jax.parallel.mesh import BATCH_AXES, batch_sharding
from radfm_jax.train.accumulate import ValueAndGrad, accumulated_value_and_grad, check_microbatching
from radfm_jax.train.grad_cache import grad_cache_value_and_grad
from radfm_jax.train.state import StateLayout, TrainState

LossFn = Callable[[dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]

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
) -> StepFunction:
    """One optimizer update on a global batch.

    With `grad_accum_steps` > 1 the batch is processed in that many microbatches inside the
    step, with the same result as one pass: a `batch_coupled_loss` (contrastive: every example
    is a negative of the others) uses GradCache; otherwise the loss must be a mean of
    per-example losses and the microbatch gradients are averaged.
    """

    def forward(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return layout.model.merge(params)(batch["image"], batch["tokens"])

    def compute_loss(params: dict, batch: dict[str, jax.Array]):
        return loss_fn(forward(params, batch))

    if grad_accum_steps == 1:
        value_and_grad: ValueAndGrad = jax.value_and_grad(compute_loss, has_aux=True)
    else:
        microbatched = {
            "microbatch_sharding": NamedSharding(mesh, PartitionSpec(None, BATCH_AXES)),
            "grad_shardings": layout.shardings.params,
        }
        if batch_coupled_loss:
            value_and_grad = grad_cache_value_and_grad(forward, loss_fn, grad_accum_steps, **microbatched)
        else:
            value_and_grad = accumulated_value_and_grad(compute_loss, grad_accum_steps, **microbatched)
    batch_shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        check_microbatching(batch["image"].shape[0], grad_accum_steps, batch_shards)
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


@dataclasses.dataclass(frozen=True)
class Encoders:
    """Named predict functions handed to evaluators: params + inputs -> unit embeddings."""

    encode_image: Callable[[dict, jax.Array], jax.Array]
    encode_text: Callable[[dict, jax.Array], jax.Array]


def build_encoders(layout: StateLayout, mesh: Mesh) -> Encoders:
    data = batch_sharding(mesh)
    params_shardings = layout.shardings.params

    def encode_image(params: dict, images: jax.Array) -> jax.Array:
        with activation_sharding(mesh):
            return layout.model.merge(params).encode_image(images)

    def encode_text(params: dict, tokens: jax.Array) -> jax.Array:
        with activation_sharding(mesh):
            return layout.model.merge(params).encode_text(tokens)

    def compiled(fn):
        return jax.jit(fn, in_shardings=(params_shardings, data), out_shardings=data)

    return Encoders(encode_image=compiled(encode_image), encode_text=compiled(encode_text))

