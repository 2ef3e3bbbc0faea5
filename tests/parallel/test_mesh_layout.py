"""Which device goes where on the mesh (radfm_jax/parallel/mesh.py's documented order): the
row-major order on CPU devices, topology-aware placement and multi-slice stacking on stand-in
TPU devices, and a train step whose loss does not depend on the placement."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

from radfm_jax.config.schema import MeshConfig
from radfm_jax.errors import ConfigError
from radfm_jax.parallel import mesh as mesh_lib
from radfm_jax.parallel.mesh import MESH_AXES, device_grid, make_mesh, mesh_layout, resolve_mesh_shape


def _ids(grid: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda d: d.id, otypes=[int])(grid)


def _row_major(devices: list[Any], shape: tuple[int, int, int]) -> np.ndarray:
    """The documented CPU order, written out: mesh[d, f, t] = devices[(d*F + f)*T + t]."""
    data, fsdp, tensor = shape
    expected = np.empty(shape, dtype=int)
    for d, f, t in itertools.product(range(data), range(fsdp), range(tensor)):
        expected[d, f, t] = devices[(d * fsdp + f) * tensor + t].id
    return expected


@pytest.mark.parametrize("cfg, shape", [
    (MeshConfig(data=-1), (8, 1, 1)),
    (MeshConfig(data=2, fsdp=4), (2, 4, 1)),
    (MeshConfig(data=1, fsdp=4, tensor=2), (1, 4, 2)),
    (MeshConfig(data=2, fsdp=-1, tensor=2), (2, 2, 2)),
    (MeshConfig(data=1, fsdp=1, tensor=-1), (1, 1, 8)),
])
def test_cpu_mesh_is_the_documented_row_major_order(cfg, shape):
    devices = jax.devices()
    assert len(devices) == 8 and devices[0].platform == "cpu"
    mesh = make_mesh(cfg)
    assert mesh.axis_names == MESH_AXES and tuple(mesh.devices.shape) == shape
    np.testing.assert_array_equal(_ids(mesh.devices), _row_major(devices, shape))
    # ... which is the reshape of the device list the mesh used to be
    np.testing.assert_array_equal(mesh.devices, np.asarray(devices).reshape(shape))


def test_cpu_devices_keep_the_order_given():
    devices = jax.devices()[::-1][:4] + jax.devices()[:4][::-1]  # 7 6 5 4 3 2 1 0
    devices = devices[1::2] + devices[::2]  # any permutation: 6 4 2 0 7 5 3 1
    grid = device_grid(MeshConfig(data=2, fsdp=2, tensor=2), devices)
    np.testing.assert_array_equal(_ids(grid), _row_major(devices, (2, 2, 2)))
    np.testing.assert_array_equal(_ids(grid).ravel(), [6, 4, 2, 0, 7, 5, 3, 1])


# Stand-in TPU devices: create_device_mesh reads device_kind, platform, coords, core_on_chip;
# create_hybrid_device_mesh groups by slice_index. "TPU v4" has no mesh_utils special case
# (ring orders of small trays), so its general torus rule applies.
@dataclasses.dataclass(frozen=True)
class FakeTpu:
    id: int
    slice_index: int
    coords: tuple[int, int, int]
    core_on_chip: int = 0
    device_kind: str = "TPU v4"
    platform: str = "tpu"
    process_index: int = 0


def _slices(num_slices: int, bounds: tuple[int, int, int]) -> list[FakeTpu]:
    """Each slice's chips in TPU id order (x fastest, then y, then z), slice after slice."""
    x_size, y_size, z_size = bounds
    per_slice = x_size * y_size * z_size
    return [
        FakeTpu(s * per_slice + (z * y_size + y) * x_size + x, s, (x, y, z))
        for s in range(num_slices) for z in range(z_size) for y in range(y_size) for x in range(x_size)
    ]


def _device_at(devices, s, coords):
    (device,) = [d for d in devices if d.slice_index == s and d.coords == coords]
    return device.id


@pytest.mark.parametrize("cfg, ici, where", [
    # tensor=4 takes the whole x-y plane (x major), fsdp=2 the z axis
    (MeshConfig(data=1, fsdp=2, tensor=4), (1, 2, 4), lambda d, f, t: (t // 2, t % 2, f)),
    # 2 x 2 x 2: tensor takes x, fsdp y, data z
    (MeshConfig(data=2, fsdp=2, tensor=2), (2, 2, 2), lambda d, f, t: (t, f, d)),
    # fsdp=-1 (8) takes all three axes, x major
    (MeshConfig(data=1, fsdp=-1), (1, 8, 1), lambda d, f, t: (f // 4, f // 2 % 2, f % 2)),
])
@pytest.mark.parametrize("num_slices", [1, 2, 4])
def test_tpu_slices_stack_along_data_each_laid_out_on_its_torus(cfg, ici, where, num_slices):
    devices = _slices(num_slices, (2, 2, 2))
    layout = mesh_layout(cfg, devices)
    assert layout.slices == num_slices and layout.ici == ici and layout.dcn == (num_slices, 1, 1)
    data, fsdp, tensor = ici
    expected = np.empty((num_slices * data, fsdp, tensor), dtype=int)
    for s, d, f, t in itertools.product(range(num_slices), range(data), range(fsdp), range(tensor)):
        expected[s * data + d, f, t] = _device_at(devices, s, where(d, f, t))
    grid = device_grid(cfg, devices)
    np.testing.assert_array_equal(_ids(grid), expected)
    if num_slices > 1:  # the slices' order in the device list does not matter, only slice_index
        np.testing.assert_array_equal(_ids(device_grid(cfg, devices[::-1])), expected)
    if ici == (1, 2, 4):  # topology-aware: not the reshape of the device list
        assert not np.array_equal(_ids(grid), np.arange(len(devices)).reshape(grid.shape))


def test_axis_sizes_that_do_not_fit_the_torus_split_a_physical_axis(caplog):
    devices = _slices(1, (4, 4, 1))
    with caplog.at_level(logging.INFO, logger=mesh_lib.__name__):
        grid = device_grid(MeshConfig(data=1, fsdp=8, tensor=2), devices)
    assert grid.shape == (1, 8, 2) and sorted(_ids(grid).ravel()) == list(range(16))
    assert "split" in caplog.text


def test_tpu_devices_that_are_not_a_whole_slice_fall_back_to_the_order_given(caplog):
    devices = [d for d in _slices(1, (2, 2, 2)) if d.coords[0] == d.coords[1]]  # a torus with holes
    with caplog.at_level(logging.WARNING, logger=mesh_lib.__name__):
        grid = device_grid(MeshConfig(data=2, fsdp=2), devices)
    np.testing.assert_array_equal(_ids(grid), _row_major(devices, (2, 2, 1)))
    assert "not whole TPU slices" in caplog.text


def test_multi_slice_sizes_are_per_slice_and_checked():
    devices = _slices(2, (2, 2, 2))
    assert resolve_mesh_shape(MeshConfig(data=-1, fsdp=4), 16, num_slices=2) == (4, 4, 1)
    assert mesh_layout(MeshConfig(data=-1, fsdp=4, dcn_data=2), devices).shape == (4, 4, 1)
    with pytest.raises(ConfigError, match="mesh.dcn_data=4 but the devices form 2 slice"):
        mesh_layout(MeshConfig(dcn_data=4), devices)
    with pytest.raises(ConfigError, match="mesh.dcn_data=2 but the devices form 1 slice"):
        make_mesh(MeshConfig(dcn_data=2))  # the CPU devices are one slice
    with pytest.raises(ConfigError, match=r"needs 16 devices but 8 are available of one slice \(2 slices\)"):
        mesh_layout(MeshConfig(data=1, fsdp=16), devices)
    with pytest.raises(ConfigError, match="unequal sizes"):
        mesh_layout(MeshConfig(), devices[:12])


# --- a train step on a multi-slice mesh of the real CPU devices ---------------------------

@dataclasses.dataclass(frozen=True)
class _Sliced:
    """A real CPU device given a slice_index (CPU devices have none), so the multi-slice path
    lays out the real devices; `device` is the one to put in the Mesh."""

    device: Any
    slice_index: int

    def __getattr__(self, name):
        return getattr(self.device, name)


def _interleaved_two_slice_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    """Slices {0, 2, 4, 6} and {1, 3, 5, 7}: a placement unlike the reshape of the list."""
    stand_ins = [_Sliced(d, d.id % 2) for d in jax.devices()]
    grid = device_grid(cfg, stand_ins)
    real = np.vectorize(lambda s: s.device, otypes=[object])(grid)
    return Mesh(real, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def _losses(exp, steps: int = 2) -> list[float]:
    state, step = exp.init_state(), exp.train_step().jit()
    losses = []
    for seed in range(steps):
        state, metrics = step(state, exp.random_batch(seed))
        losses.append(float(metrics["loss"]))
    return losses


def test_train_step_on_a_two_slice_mesh_equals_the_single_slice_mesh(toy_experiment, monkeypatch):
    single = toy_experiment(MeshConfig(data=2, fsdp=4), batch_size=32)
    np.testing.assert_array_equal(single.mesh.devices, np.asarray(jax.devices()).reshape(2, 4, 1))
    reference = _losses(single)

    from radfm_jax.train import experiment

    monkeypatch.setattr(experiment, "make_mesh", _interleaved_two_slice_mesh)
    sliced = toy_experiment(MeshConfig(data=1, fsdp=4, dcn_data=2), batch_size=32)
    assert dict(sliced.mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    np.testing.assert_array_equal(_ids(sliced.mesh.devices), [[[0], [2], [4], [6]], [[1], [3], [5], [7]]])
    losses = _losses(sliced)
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-6)
    assert losses[0] != losses[1]  # the first step did update something
