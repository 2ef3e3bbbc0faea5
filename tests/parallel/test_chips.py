"""Chip table against the vendors' datasheets, and TPU slice names against libtpu."""

import importlib.util

import jax
import pytest

from radfm_jax.errors import ConfigError
from radfm_jax.parallel import chips

GiB = 1024**3

# device_kind as JAX reports it -> (peak dense bf16 TFLOP/s, HBM bytes), from the datasheets:
# Cloud TPU system-architecture pages; NVIDIA A100 / H100 / H200 datasheets (dense, no sparsity).
DATASHEET = {
    "TPU v4": (275, 32 * GiB),
    "TPU v5 lite": (197, 16 * GiB),
    "TPU v5e": (197, 16 * GiB),
    "TPU v5": (459, 95 * GiB),
    "TPU v5p": (459, 95 * GiB),
    "TPU v6 lite": (918, 32 * GiB),
    "NVIDIA A100-SXM4-40GB": (312, 40e9),
    "NVIDIA A100-PCIE-40GB": (312, 40e9),
    "NVIDIA A100-SXM4-80GB": (312, 80e9),
    "NVIDIA A100 80GB PCIe": (312, 80e9),
    "NVIDIA H100 80GB HBM3": (989, 80e9),
    "NVIDIA H200": (989, 141e9),
}


@pytest.mark.parametrize("kind", sorted(DATASHEET))
def test_device_kinds_map_to_datasheet_figures(kind):
    chip = chips.chip_for_kind(kind)
    tflops, hbm = DATASHEET[kind]
    assert chip is not None
    assert chip.peak_bf16_flops == pytest.approx(tflops * 1e12)
    assert chip.hbm_bytes == pytest.approx(hbm)


@pytest.mark.parametrize("kind", ["cpu", "TPU v4 lite", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "Tesla V100-SXM2-16GB"])
def test_unknown_or_lower_clocked_kinds_are_not_guessed(kind):
    assert chips.chip_for_kind(kind) is None


def test_cpu_has_no_chip_unless_a_peak_is_given():
    cpu = jax.devices()[0]
    assert chips.chip_for_device(cpu) is None
    custom = chips.chip_for_device(cpu, peak_flops=2e12)
    assert custom.peak_bf16_flops == 2e12 and custom.hbm_bytes is None
    with pytest.raises(ConfigError, match="positive"):
        chips.chip_for_device(cpu, peak_flops=0)


# Slice name -> (chip, chips, libtpu topology): Cloud TPU docs (v4 and v5p names count
# TensorCores, two per chip; v5e and v6e names count chips) and MaxText's accelerator map.
SLICES = {
    "v5e-256": (chips.TPU_V5E, 256, "v5e:16x16"),
    "v5litepod-16": (chips.TPU_V5E, 16, "v5e:4x4"),
    "v5e-8": (chips.TPU_V5E, 8, "v5e:2x4"),
    "v4-8": (chips.TPU_V4, 4, "v4:2x2x1"),
    "v4-32": (chips.TPU_V4, 16, "v4:2x2x4"),
    "v5p-128": (chips.TPU_V5P, 64, "v5:4x4x4"),
    "v6e-64": (chips.TPU_V6E, 64, "v6e:8x8"),
}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_slice_names(name):
    chip, count, topology = SLICES[name]
    slice_ = chips.parse_tpu_topology(name)
    assert (slice_.chip, slice_.num_chips, slice_.topology_name) == (chip, count, topology)
    kwargs = slice_.topology_desc_kwargs()
    assert kwargs["platform"] == "tpu" and kwargs["topology_name"] == topology


def test_torus_wrap_only_on_full_pod_edges_and_cubes():
    assert chips.parse_tpu_topology("v5e-256").wrap == (True, True, False)
    assert chips.parse_tpu_topology("v5e-128").wrap == (False, True, False)
    assert chips.parse_tpu_topology("v4-128").wrap == (True, True, True)  # 4x4x4: a full cube
    assert chips.parse_tpu_topology("v4-64").wrap == (False, False, False)


def test_multi_slice_names():
    # "<slice>x<slices>": slices of one size joined by DCN (libtpu's num_slices).
    two = chips.parse_tpu_topology("v5e-256x2")
    assert (two.name, two.num_chips, two.num_slices, two.total_chips) == ("v5e-256x2", 256, 2, 512)
    assert two.topology_name == "v5e:16x16" and two.chip == chips.TPU_V5E
    assert two.topology_desc_kwargs()["num_slices"] == 2
    assert chips.parse_tpu_topology("v4-32x4").total_chips == 64
    one = chips.parse_tpu_topology("v5e-256x1")
    assert one.name == "v5e-256" and one.num_slices == 1 and one.topology_desc_kwargs()["num_slices"] == 1


@pytest.mark.parametrize("name, message", [
    ("v5e-12", "valid sizes: v5e-1, v5e-4"), ("v4-6", "no v4 slice"), ("v7-8", "unknown TPU"), ("local", "unknown TPU"),
    ("v5e-256x0", "slice count must be at least 1"), ("v5e-256x", "unknown TPU"), ("v5e-12x2", "no v5e slice"),
])
def test_bad_slice_names_name_the_valid_ones(name, message):
    with pytest.raises(ConfigError, match=message):
        chips.parse_tpu_topology(name)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (the tpu extra)")
@pytest.mark.parametrize("name", ["v5e-256", "v4-32", "v5p-128", "v6e-64", "v5e-1"])
def test_libtpu_builds_each_slice_with_the_table_chip(name):
    from jax.experimental import topologies

    slice_ = chips.parse_tpu_topology(name)
    devices = topologies.get_topology_desc(**slice_.topology_desc_kwargs()).devices
    assert len(devices) == slice_.num_chips
    assert {chips.chip_for_device(d) for d in devices} == {slice_.chip}


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (the tpu extra)")
def test_libtpu_builds_two_slices_with_slice_indices():
    from jax.experimental import topologies

    slice_ = chips.parse_tpu_topology("v5e-8x2")
    devices = topologies.get_topology_desc(**slice_.topology_desc_kwargs()).devices
    assert len(devices) == slice_.total_chips == 16
    assert sorted(d.slice_index for d in devices) == [0] * 8 + [1] * 8
