import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from radfm_jax.config.schema import MeshConfig
from radfm_jax.errors import ConfigError
from radfm_jax.parallel import rules
from radfm_jax.parallel.mesh import make_mesh, resolve_mesh_shape


def test_mesh_shape_resolution():
    assert resolve_mesh_shape(MeshConfig(data=-1, fsdp=4, tensor=1), 8) == (2, 4, 1)
    assert resolve_mesh_shape(MeshConfig(data=2, fsdp=4, tensor=1), 8) == (2, 4, 1)
    with pytest.raises(ConfigError, match="needs 6 devices"):
        resolve_mesh_shape(MeshConfig(data=2, fsdp=3, tensor=1), 8)
    with pytest.raises(ConfigError, match="does not divide"):
        resolve_mesh_shape(MeshConfig(data=-1, fsdp=3, tensor=1), 8)


def test_logical_to_mesh_respects_divisibility_and_axis_reuse():
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    tp = rules.PRESETS["fsdp_tp"]
    assert rules.logical_to_mesh(("embed", "mlp"), (64, 256), tp, mesh) == P("fsdp", "tensor")
    assert rules.logical_to_mesh(("embed", "heads", "head_dim"), (64, 3, 16), tp, mesh) == P("fsdp", None, None)
    assert rules.logical_to_mesh(("embed", "embed"), (64, 64), tp, mesh) == P("fsdp", None)
    assert rules.logical_to_mesh(("embed",), (6,), tp, mesh) == P(None)
    assert rules.logical_to_mesh(("embed", "mlp"), (64, 256), rules.PRESETS["dp"], mesh) == P(None, None)


def test_replicated_fraction_and_fsdp_check():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    params = {"w": jax.ShapeDtypeStruct((64, 64), np.float32), "b": jax.ShapeDtypeStruct((3,), np.float32)}
    names = {"w": ("embed", "mlp"), "b": ("embed",)}
    shardings = rules.param_shardings(params, names, rules.PRESETS["fsdp"], mesh)
    assert shardings["w"].spec == P("fsdp", None) and shardings["b"].spec == P(None)
    fraction = rules.replicated_fraction(params, shardings)
    assert fraction == pytest.approx(3 / (64 * 64 + 3))
    rules.check_sufficiently_sharded("fsdp", fraction, mesh)
    with pytest.raises(ConfigError, match="replicated"):
        rules.check_sufficiently_sharded("fsdp", 0.5, mesh)
