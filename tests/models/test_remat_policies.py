"""Named remat policies: same loss and gradients as no remat, less temporary memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models.layers import REMAT_NAMES, Transformer, remat_policy_name


def stack(remat: bool | str, *, width: int = 16, depth: int = 2) -> Transformer:
    return Transformer(
        width, depth, 2, 2 * width, dtype=jnp.float32, scan_layers=True, remat=remat, rngs=nnx.Rngs(0)
    )


def loss_and_grads(model: Transformer, x: jax.Array):
    graphdef, state = nnx.split(model)
    mask = jnp.arange(x.shape[1]) < jnp.array([[x.shape[1]], [3]])

    def loss(state):
        return jnp.mean(jnp.sin(nnx.merge(graphdef, state)(x, mask)))

    return jax.jit(jax.value_and_grad(loss)), state


def test_every_policy_matches_no_remat() -> None:
    # Scanned layers; unrolled ones take the same nnx.remat (tests/models/test_models.py).
    x = jax.random.normal(jax.random.key(0), (2, 6, 16))
    fn, state = loss_and_grads(stack("none"), x)
    ref_loss, ref_grads = fn(state)
    for name in REMAT_NAMES[1:]:
        model = stack(name)
        fn, state = loss_and_grads(model, x)
        assert "remat" in str(jax.make_jaxpr(fn)(state)), name
        loss, grads = fn(state)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, err_msg=name)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads, ref_grads)


def test_remat_lowers_temporary_memory() -> None:
    # Informative (printed with -s), not timed. On CPU, XLA honours remat in scanned layers
    # (unrolled ones showed no saving there).
    x = jax.random.normal(jax.random.key(0), (2, 32, 32))
    temp = {}
    for name in ("none", "full"):
        fn, state = loss_and_grads(stack(name, width=32, depth=4), x)
        temp[name] = fn.lower(state).compile().memory_analysis().temp_size_in_bytes
    print("temp bytes per remat policy:", temp)
    assert temp["full"] < temp["none"]


def test_bool_values_of_older_configs() -> None:
    assert remat_policy_name(True) == "full" and remat_policy_name(False) == "none"
    assert stack(True).remat == "full" and stack(False).remat == "none"
    with pytest.raises(ValueError, match="dots_no_batch"):
        remat_policy_name("dot")


def test_policy_is_a_config_choice() -> None:
    config = apply_overrides(ExperimentConfig(), ["model.remat=dots_no_batch"])
    assert config.model.remat == "dots_no_batch"
    with pytest.raises(ConfigError, match="save_qkv_proj"):
        apply_overrides(ExperimentConfig(), ["model.remat=true"])
