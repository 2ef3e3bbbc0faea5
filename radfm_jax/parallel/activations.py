"""Sharding constraints on activations while a step is traced.

Without them XLA propagates the parameters' layout onto the activations: under FSDP (weights
split along `embed` over `fsdp`) it chose full-batch activations on every device, using the
memory of a data-parallel copy per device. Models mark their residual stream with
`constrain_batch(x)`; outside `activation_sharding(mesh)` (which the step builder enters while
tracing) it does nothing, so models stay free of meshes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.parallel.mesh import BATCH_AXES

_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("activation_mesh", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh) -> Iterator[None]:
    """Within this block (while tracing), constrain_batch splits activations over `mesh`."""
    token = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(token)


def constrain_batch(x: jax.Array) -> jax.Array:
    """Leading (batch) axis split over the batch axes of the active mesh, the rest replicated."""
    mesh = _MESH.get()
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(BATCH_AXES)))
