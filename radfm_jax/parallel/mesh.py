"""The device mesh from the config: axes `data`, `fsdp`, `tensor`, laid out on the topology.

Which device goes where (the documented device order)
-----------------------------------------------------
Devices are grouped into *slices* by their `slice_index`: the TPU slices of a multi-slice run,
each a torus of chips joined by ICI, the slices joined by the data-centre network (DCN).
Devices without a `slice_index` (CPU, GPU) form one slice. Slices are taken in increasing
`slice_index`. With S slices and the config's per-slice sizes `mesh.data`, `mesh.fsdp`,
`mesh.tensor` = (D, F, T), -1 resolved against one slice's devices:

    mesh axis sizes      data = S * D,   fsdp = F,   tensor = T          (mesh.dcn_data = S)
    mesh[s * D + d, f, t] is a device of slice s, at (d, f, t) of that slice's ICI mesh

so "data" is the only axis that crosses slices: slice s holds the data rows s*D .. s*D + D - 1,
one contiguous block of every global batch, and only data parallelism's gradient all-reduce
goes over DCN, while fsdp's all-gathers / reduce-scatters and tensor's collectives stay on ICI.

Within one slice, `jax.experimental.mesh_utils.create_device_mesh` places the axes, given in
order of increasing traffic (data, fsdp, tensor):

- CPU (and any platform neither GPU nor TPU): the slice's devices in the order given
  (`jax.devices()`: by id), row-major, tensor fastest: mesh[d, f, t] = devices[(d*F + f)*T + t].
  On the tests' 8 fake CPU devices this is exactly the old reshape of the device list.
- GPU: the same, after sorting by device id.
- TPU: topology-aware. The most communicating axis (tensor) is given whole physical torus axes
  first, then fsdp, then data, so each collective runs along full rings (e.g. on a v5e-256, a
  16 x 16 torus, tensor=16 or fsdp=16 takes one physical axis, fsdp=256 both); small v5e / v6e
  trays (4 / 8 / 16 chips) use mesh_utils' ring orders. When an axis size is not a product of
  physical axis sizes (fsdp=8 on 16 x 16), a physical axis is split between mesh axes
  (`allow_split_physical_axes`) and a log line says so. A set of TPU devices that is not a
  whole slice (a hole in the torus) falls back to the CPU rule, with a warning.

`mesh_layout` resolves the sizes; `device_grid` returns the (data, fsdp, tensor) array of
devices; `make_mesh` wraps it in a `jax.sharding.Mesh`. Every sharding rule names only the three
axes, so a multi-slice mesh needs no change anywhere else.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from radfm_jax.config.schema import MeshConfig
from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
# The global batch is split over every axis that holds copies of a parameter shard's work.
BATCH_AXES = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class MeshLayout:
    """`slices` slices (over DCN, all on the data axis), each an ICI mesh of shape `ici`."""

    slices: int
    ici: tuple[int, int, int]  # (data, fsdp, tensor) within one slice

    @property
    def dcn(self) -> tuple[int, int, int]:
        """Slices per mesh axis: the DCN mesh of create_hybrid_device_mesh."""
        return (self.slices, 1, 1)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The whole mesh's (data, fsdp, tensor) sizes."""
        return tuple(i * d for i, d in zip(self.ici, self.dcn))


def slice_index(device: Any) -> int:
    """The slice a device belongs to: its `slice_index` (TPU), else 0 (one slice)."""
    index = getattr(device, "slice_index", None)
    return 0 if index is None else int(index)


def group_by_slice(devices: Sequence[Any]) -> list[list[Any]]:
    """The devices of each slice, in increasing slice_index, each in the order given."""
    groups: dict[int, list[Any]] = collections.defaultdict(list)
    for device in devices:
        groups[slice_index(device)].append(device)
    return [groups[key] for key in sorted(groups)]


def resolve_mesh_shape(mesh_cfg: MeshConfig, device_count: int, num_slices: int = 1) -> tuple[int, int, int]:
    """The whole mesh's (data, fsdp, tensor) sizes for `device_count` devices in `num_slices`
    equal slices: the config's sizes are per slice (the one -1 takes the rest of a slice), and
    the data axis is multiplied by the slice count."""
    return _layout(mesh_cfg, device_count, num_slices).shape


def _layout(mesh_cfg: MeshConfig, device_count: int, num_slices: int) -> MeshLayout:
    dcn_data = mesh_cfg.dcn_data
    if dcn_data not in (-1, num_slices):
        raise ConfigError(
            f"mesh.dcn_data={dcn_data} but the devices form {num_slices} slice(s); the data axis "
            f"spans every slice: set mesh.dcn_data={num_slices} or -1 (the slice count)"
        )
    per_slice = device_count // num_slices
    where = f" of one slice ({num_slices} slices)" if num_slices > 1 else ""
    sizes = [mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor]
    fixed = math.prod(size for size in sizes if size != -1)
    if -1 in sizes:
        if per_slice % fixed:
            raise ConfigError(
                f"mesh {dict(zip(MESH_AXES, sizes))} does not divide the {per_slice} devices{where}; "
                "change mesh.data / mesh.fsdp / mesh.tensor"
            )
        sizes[sizes.index(-1)] = per_slice // fixed
    if math.prod(sizes) != per_slice:
        raise ConfigError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices but "
            f"{per_slice} are available{where}; set one axis to -1 to take the rest"
        )
    return MeshLayout(num_slices, tuple(sizes))


def mesh_layout(mesh_cfg: MeshConfig, devices: Sequence[Any]) -> MeshLayout:
    """The slice count from the devices' slice_index and the per-slice sizes of the config."""
    slices = group_by_slice(devices)
    counts = sorted({len(group) for group in slices})
    if len(counts) > 1:
        raise ConfigError(
            f"the devices form {len(slices)} slices of unequal sizes {counts}; a multi-slice mesh "
            "needs every slice whole and the same size"
        )
    return _layout(mesh_cfg, len(devices), len(slices))


def _with_split_fallback(build, shape: tuple[int, ...]) -> np.ndarray:
    """`build(allow_split_physical_axes=False)`, else with True (and a log line); `shape` is
    one slice's (data, fsdp, tensor)."""
    try:
        return build(allow_split_physical_axes=False)
    except NotImplementedError:  # an axis size that is no product of whole physical axes
        log.info("slice mesh %s: a physical torus axis is split between mesh axes (less "
                 "bandwidth on those axes than whole rings)", dict(zip(MESH_AXES, shape)))
        return build(allow_split_physical_axes=True)


def device_grid(mesh_cfg: MeshConfig, devices: Sequence[Any] | None = None) -> np.ndarray:
    """The (data, fsdp, tensor) array of devices (the module docstring says which goes where):
    mesh_utils.create_device_mesh on one slice, create_hybrid_device_mesh (DCN mesh
    (slices, 1, 1): the slices stacked along data) on several."""
    devices = list(jax.devices() if devices is None else devices)
    layout = mesh_layout(mesh_cfg, devices)
    try:
        if layout.slices == 1:
            return _with_split_fallback(
                lambda **kw: mesh_utils.create_device_mesh(layout.ici, devices, **kw), layout.ici)
        return _with_split_fallback(
            lambda **kw: mesh_utils.create_hybrid_device_mesh(layout.ici, layout.dcn, devices, **kw),
            layout.ici)
    except AssertionError as err:  # TPU devices that are not whole slices (a hole in the torus)
        log.warning("mesh %s: the %d devices are not whole TPU slices (%s); laid out in the order "
                    "given, not by topology", dict(zip(MESH_AXES, layout.shape)), len(devices),
                    (str(err).splitlines() or [""])[0][:200])
        grids = [np.asarray(group).reshape(layout.ici) for group in group_by_slice(devices)]
        return np.concatenate(grids, axis=0)


def make_mesh(mesh_cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    grid = device_grid(mesh_cfg, devices)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


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
            f"(mesh axes data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}; data counts "
            f"every slice: mesh.dcn_data x mesh.data); choose a multiple of {shards}"
        )
    return global_batch // jax.process_count()
