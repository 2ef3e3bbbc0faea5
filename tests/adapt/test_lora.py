"""LoRA adapters (flax.nnx.LoRA inside models/layers.LoraLinearGeneral): a zero-initialised B
reproduces the base model exactly, only adapters (and the head) receive gradients and updates,
the merged model equals the adapted one, and the adapters cost a few percent of a ViT-B."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.adapt.lora import count_parameters, merge_lora
from radfm_jax.config import presets
from radfm_jax.models.layers import LoraSpec
from radfm_jax.models.vit import ViT

SHAPE = (16, 16)


def _params(module) -> dict:
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def _load(module, params: dict):
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(module, state)
    return module


@pytest.fixture(params=[True, False], ids=["scan", "unrolled"])
def pair(request):
    cfg = presets.vit("Ti", 8, width=32, depth=2, heads=2, pool="map")
    base = ViT(cfg, SHAPE, scan_layers=request.param, rngs=nnx.Rngs(0))
    adapted = ViT(cfg, SHAPE, scan_layers=request.param, rngs=nnx.Rngs(1), lora=LoraSpec(4, 8.0))
    # The adapted tower takes the base tower's weights (as fine-tuning from a checkpoint does).
    params = _params(adapted)
    base_params = _params(base)
    merged = jax.tree.map(lambda x: x, base_params)
    for path in _flat_paths(params):
        if "lora" in path:
            _set(merged, path, _get(params, path))
    return base, _load(adapted, merged)


def _flat_paths(tree, prefix=()):
    if not isinstance(tree, dict):
        return [prefix]
    return [p for key, value in tree.items() for p in _flat_paths(value, (*prefix, key))]


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def test_zero_initialised_adapters_reproduce_the_base_model_exactly(pair):
    base, adapted = pair
    images = jax.random.normal(jax.random.key(0), (3, *SHAPE, 1))
    np.testing.assert_array_equal(np.asarray(adapted(images)), np.asarray(base(images)))
    assert all(np.all(np.asarray(b) == 0) for path in _flat_paths(_params(adapted)) if path[-1] == "lora_b"
               for b in [_get(_params(adapted), path)])


def test_merged_adapters_equal_the_adapted_model(pair):
    _, adapted = pair
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: np.asarray(x) + 0.1 * rng.standard_normal(np.shape(x)).astype(np.float32),
                          _params(adapted))  # trained-looking adapters (B no longer zero)
    _load(adapted, params)
    images = jax.random.normal(jax.random.key(1), (3, *SHAPE, 1))
    plain = ViT(presets.vit("Ti", 8, width=32, depth=2, heads=2, pool="map"), SHAPE,
                scan_layers=adapted.encoder.scan_layers, rngs=nnx.Rngs(2))
    merged = merge_lora(params, scale=8.0 / 4)
    assert "lora" not in str(jax.tree_util.tree_structure(merged))
    _load(plain, merged)
    np.testing.assert_allclose(np.asarray(plain(images)), np.asarray(adapted(images)), rtol=2e-5, atol=2e-5)


def test_only_adapters_get_gradients_when_the_tower_is_frozen(pair):
    _, adapted = pair
    graph, params, rest = nnx.split(adapted, nnx.Param, ...)
    images = jax.random.normal(jax.random.key(2), (3, *SHAPE, 1))
    trainable = jax.tree_util.tree_map_with_path(lambda path, _: "lora" in jax.tree_util.keystr(path), params)

    def loss(params):
        frozen = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
        return jnp.sum(nnx.merge(graph, frozen, rest)(images) ** 2)

    grads = jax.grad(loss)(params)
    for (path, grad), train in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(trainable)):
        if not train:
            assert not np.any(np.asarray(grad)), jax.tree_util.keystr(path)
    # B is zero, so A's gradient is zero at the start; B's is not.
    lora_b = [g for (path, g) in jax.tree_util.tree_flatten_with_path(grads)[0] if "lora_b" in jax.tree_util.keystr(path)]
    assert lora_b and all(np.any(np.asarray(g)) for g in lora_b)


def test_rank_8_adapters_are_under_2_percent_of_vit_b():
    cfg = presets.vit("B", 16)
    model = nnx.eval_shape(lambda: ViT(cfg, (224, 224), rngs=nnx.Rngs(0), lora=LoraSpec(8, 16.0)))
    adapters, total = count_parameters(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    # Per block: q, k, v, out (4 x 2 x 768 x 8) and fc1, fc2 (2 x (768 + 3072) x 8).
    assert adapters == 12 * (4 * 2 * 768 * 8 + 2 * (768 + 3072) * 8)
    assert adapters / (total - adapters) < 0.02
