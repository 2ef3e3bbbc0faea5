"""The device mesh from the config: axes `data`, `fsdp`, `tensor`."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from radfm_jax.config.schema import MeshConfig
from radfm_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
# The global batch is split over every axis that holds copies of a parameter shard's work.
BATCH_AXES = ("data", "fsdp")


def resolve_mesh_shape(mesh_cfg: MeshConfig, device_count: int) -> tuple[int, int, int]:
    """Fill in the one -1 axis with the remaining devices and check the product."""
    sizes = [mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor]
    fixed = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if device_count % fixed:
            raise ConfigError(
                f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {device_count} devices; "
                "change mesh.data / mesh.fsdp / mesh.tensor"
            )
        sizes[sizes.index(-1)] = device_count // fixed
    if math.prod(sizes) != device_count:
        raise ConfigError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but "
            f"{device_count} are available; set one axis to -1 to take the rest"
        )
    return tuple(sizes)


def make_mesh(mesh_cfg: MeshConfig, devices: list[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(mesh_cfg, len(devices))
    device_grid = np.asarray(devices).reshape(shape)
    return Mesh(device_grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_size_per_process(global_batch: int, mesh: Mesh) -> int:
    """Each process feeds the slice of the global batch held by its devices."""
    shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    if global_batch % shards:
        raise ConfigError(
            f"batch_size={global_batch} is not divisible by the {shards} batch shards "
            f"(mesh.data x mesh.fsdp); choose a multiple of {shards}"
        )
    return global_batch // jax.process_count()
