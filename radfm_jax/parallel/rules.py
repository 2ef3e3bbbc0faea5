"""Logical-axis presets: which mesh axis each logical parameter axis is split over."""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.errors import ConfigError

LogicalRules = dict[str, str | None]

# Parameters are split over `fsdp` along their embedding axis (every tower matrix has one; a
# parameter without one, e.g. an MLP bias or a low-rank adapter's output matrix, along its mlp or
# heads axis) and, with tensor parallelism, over `tensor` along heads / mlp / vocab. A rule
# listed earlier takes its mesh axis first; unlisted names replicate.
PRESETS: dict[str, LogicalRules] = {
    "dp": {},
    "fsdp": {"embed": "fsdp", "mlp": "fsdp", "heads": "fsdp"},
    "fsdp_tp": {"embed": "fsdp", "heads": "tensor", "mlp": "tensor", "vocab": "tensor"},
}

# Under an FSDP preset at most this fraction of parameter bytes may stay replicated.
MAX_REPLICATED_FRACTION = 0.02


def logical_to_mesh(
    names: tuple[str | None, ...], shape: tuple[int, ...], rules: LogicalRules, mesh: Mesh
) -> PartitionSpec:
    """Map one parameter's logical names to a PartitionSpec.

    Rules are applied in their order: each gives its mesh axis to the first dimension of its
    name that is still free. A dimension stays replicated when its size does not divide the
    mesh axis, or when the mesh axis is already used by another dimension of the parameter.
    """
    spec: list[str | None] = [None] * len(names)
    used: set[str] = set()
    for name, axis in rules.items():
        if axis in used or mesh.shape[axis] == 1:
            continue
        for dim, (dim_name, size) in enumerate(zip(names, shape)):
            if dim_name == name and spec[dim] is None and size % mesh.shape[axis] == 0:
                spec[dim] = axis
                used.add(axis)
                break
    return PartitionSpec(*spec)


def param_shardings(
    abstract_params: Any, logical_names: Any, rules: LogicalRules, mesh: Mesh
) -> Any:
    """NamedSharding for every parameter leaf, given its logical names."""
    return jax.tree.map(
        lambda leaf, names: NamedSharding(mesh, logical_to_mesh(tuple(names), leaf.shape, rules, mesh)),
        abstract_params,
        logical_names,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def replicated_fraction(abstract_params: Any, shardings: Any) -> float:
    """Fraction of parameter bytes that are not split over any mesh axis."""
    total = 0
    replicated = 0
    for leaf, sharding in zip(jax.tree.leaves(abstract_params), jax.tree.leaves(shardings)):
        nbytes = math.prod(leaf.shape) * leaf.dtype.itemsize
        total += nbytes
        if all(axis is None for axis in sharding.spec):
            replicated += nbytes
    return replicated / max(total, 1)


def check_sufficiently_sharded(preset: str, fraction: float, mesh: Mesh) -> None:
    if preset.startswith("fsdp") and mesh.shape["fsdp"] > 1 and fraction > MAX_REPLICATED_FRACTION:
        raise ConfigError(
            f"{fraction:.1%} of parameter bytes are replicated under the '{preset}' preset "
            f"(limit {MAX_REPLICATED_FRACTION:.0%}); choose widths divisible by mesh.fsdp="
            f"{mesh.shape['fsdp']} or use mesh.rules=dp"
        )


def describe(abstract_params: Any, shardings: Any) -> list[str]:
    """One line per parameter: path, shape and resolved PartitionSpec (printed at start-up)."""
    lines = []
    flat_params = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    for (path, leaf), sharding in zip(flat_params, jax.tree.leaves(shardings)):
        name = "/".join(str(getattr(key, "key", key)) for key in path)
        lines.append(f"{name:70s} {str(tuple(leaf.shape)):22s} {sharding.spec}")
    return lines
