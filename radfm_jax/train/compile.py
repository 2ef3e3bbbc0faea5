"""Ahead-of-time compilation of the train step.

Training runs the executable compiled here (CompiledStep: so XLA's cost analysis of it comes
free, without a second compilation), and `radfm compile` compiles the same step on abstract
inputs for other devices (compile_train_step).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.findings import FINDINGS
from radfm_jax.errors import ConfigError
from radfm_jax.parallel.mesh import batch_size_per_process
from radfm_jax.train.state import StateLayout
from radfm_jax.train.step import StepFunction, batch_shardings


class CompiledStep:
    """A train step compiled at its first call from that call's arguments (the real first
    batch fixes every shape), then run as that executable; `.compiled` exposes it."""

    def __init__(self, step: StepFunction):
        self._jitted = step.jit()
        self.compiled: Any = None

    def __call__(self, state: Any, batch: dict[str, jax.Array]) -> Any:
        if self.compiled is None:
            self.compiled = self._jitted.lower(state, batch).compile()
        return self.compiled(state, batch)


def abstract_batch(config: ExperimentConfig, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes, dtypes and shardings of one global train batch as synthetic_cxr's loader yields
    it (data sets with other label vocabularies differ only in the tiny `labels` width)."""
    b, size = config.batch_size, config.data.input_size
    shapes = {
        "image": ((b, size, size, 1), jnp.float32),
        "tokens": ((b, config.data.max_text_len), jnp.int32),
        "labels": ((b, len(FINDINGS)), jnp.int8),
    }
    shardings = batch_shardings(mesh, tuple(shapes))
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=shardings[k]) for k, (shape, dtype) in shapes.items()}


def compile_train_step(step: StepFunction, layout: StateLayout, config: ExperimentConfig, mesh: Mesh) -> Any:
    """`step.jit().lower(abstract state, abstract batch).compile()`; no array is allocated.

    Running out of device memory is a user's problem (batch too large for the chips), so it
    becomes a ConfigError with XLA's one-line reason.
    """
    batch_size_per_process(config.batch_size, mesh)  # the batch must split over the mesh
    lowered = step.jit().lower(layout.abstract, abstract_batch(config, mesh))
    try:
        return lowered.compile()
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise ConfigError(
            f"the train step does not fit in device memory ({str(err).splitlines()[0]}); lower "
            "batch_size, set model.remat=full, or split parameters over more devices (mesh.fsdp)"
        ) from None
