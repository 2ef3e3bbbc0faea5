"""The 3D image tower: tubelets against explicit loops, each attention layout against full
attention under the equivalent block mask, inflation of a 2D ViT, position-embedding resizing,
declared parameter count and FLOPs against the module, scan / remat equivalence, MAE."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config import presets
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig, ModelConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models import towers
from radfm_jax.models.mae import MaskedAutoencoder
from radfm_jax.models.pixel_decoder import PixelDecoderConfig
from radfm_jax.models.vit import ViT, ViTConfig, patchify
from radfm_jax.models.vit3d import ViT3D, ViT3DConfig, inflate_from_vit2d, resize_pos_emb

VOCAB = {"batch", "seq", "embed", "mlp", "heads", "head_dim", "layers", "patch", "seq_depth", "seq_height",
         "seq_width"}
VOLUME = (8, 8, 8)  # (D, H, W): a 4 x 2 x 2 token grid in (2, 4, 4) tubelets
LAYOUTS = ("global", "factorised", "local_global")


def config(attention: str = "global", pool: str = "mean", **overrides) -> ViT3DConfig:
    cfg = ViT3DConfig(tubelet=(2, 4, 4), width=16, depth=3, heads=2, mlp_ratio=2.0, pool=pool,
                      attention=attention, slab=2, global_every=3)
    return dataclasses.replace(cfg, **overrides)


def build(cfg: ViT3DConfig, *, scan: bool = True, remat: str = "none", seed: int = 0, shape=VOLUME,
          channels: int = 1) -> ViT3D:
    return ViT3D(cfg, shape, channels=channels, scan_layers=scan, remat=remat, rngs=nnx.Rngs(seed))


def volume(batch: int = 2, shape=VOLUME, channels: int = 1, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, *shape, channels))


def run_compiled(fn, modules: tuple, *arrays):
    """fn(*modules, *arrays) as one compiled program without LLVM's backend optimisation: for
    these tiny models it costs more compile time than it saves, and op-by-op dispatch more."""
    graphdef, state = nnx.split(modules)

    def pure(state, *arrays):
        return fn(*nnx.merge(graphdef, state), *arrays)

    return jax.jit(pure).lower(state, *arrays).compile({"xla_backend_optimization_level": 0})(state, *arrays)


# --- tubelets -----------------------------------------------------------------------------


def patches_by_loops(x: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """Row-major patches, each flattened as (p_1, ..., p_n, C), by explicit loops."""
    b, *spatial, c = x.shape
    grid = [s // p for s, p in zip(spatial, patch)]
    out = np.zeros((b, math.prod(grid), math.prod(patch) * c), x.dtype)
    for n in range(b):
        for index, cell in enumerate(np.ndindex(*grid)):
            values = []
            for offset in np.ndindex(*patch):
                voxel = tuple(g * p + o for g, p, o in zip(cell, patch, offset))
                values.extend(x[(n, *voxel)])
            out[n, index] = values
    return out


@pytest.mark.parametrize("shape, patch", [((4, 6, 8), (2, 3, 4)), ((6, 4, 4), (3, 1, 2)), ((4, 6), 2)])
def test_patchify_matches_loops(shape, patch):
    x = np.random.default_rng(0).normal(size=(2, *shape, 2)).astype(np.float32)
    per_axis = (patch,) * len(shape) if isinstance(patch, int) else patch
    np.testing.assert_array_equal(patchify(jnp.asarray(x), patch), patches_by_loops(x, per_axis))
    with pytest.raises(ValueError, match="spatial axes"):
        patchify(jnp.asarray(x), (2,) * (len(shape) + 1))


# --- attention layouts against full attention under a block mask ---------------------------


def reference_encode(model: ViT3D, tokens: jax.Array) -> jax.Array:
    """The unrolled tower's encoder by full attention over every token, each layout's pattern as
    a (B, N, N) mask: same slice, same (h, w) column, same slab. The cls token (first) skips the
    slab layers and attends to everything in global ones."""
    b, n, _ = tokens.shape
    slices = model.grid[0]
    per_slice = n // slices
    depth, column = np.arange(n) // per_slice, np.arange(n) % per_slice

    def mask(groups: np.ndarray) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(groups[:, None] == groups[None, :]), (b, n, n))

    x = tokens
    if model.pool == "cls":
        x = jnp.concatenate([jnp.broadcast_to(model.cls_token[...], (b, 1, x.shape[-1])), x], axis=1)
    lead = int(model.pool == "cls")
    for unit in model.encoder.layers:
        if model.attention == "global":
            x = unit(x)
        elif model.attention == "factorised":
            x = x + unit.attn(unit.norm1(x), mask=mask(depth))
            x = x + unit.temporal_attn(unit.temporal_norm(x), mask=mask(column))
            x = x + unit.mlp(unit.norm2(x))
        else:
            slab = model.grid[0] // unit.windows
            y = x[:, lead:]
            for block in unit.local:
                y = block(y, mask(depth // slab))
            x = unit.global_block(jnp.concatenate([x[:, :lead], y], axis=1))
    return model.norm(x)


@pytest.mark.parametrize("attention, pool", [("factorised", "mean"), ("local_global", "mean"),
                                             ("local_global", "cls"), ("global", "map")])
def test_layout_matches_masked_full_attention(attention, pool):
    model = build(config(attention, pool), scan=False)
    encoded, reference = run_compiled(lambda m, x: (m.encode(m.embed_patches(x)),
                                                    reference_encode(m, m.embed_patches(x))), (model,), volume())
    np.testing.assert_allclose(encoded, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["factorised", "local_global"])
def test_tube_masked_subset_matches_masked_full_attention(attention):
    model = build(config(attention), scan=False)
    tokens = model.embed_patches(volume())
    # Keep the (h, w) positions 0 and 3 of the 2 x 2 plane in every one of the 4 slices.
    kept = np.array([d * 4 + s for d in range(4) for s in (0, 3)])
    subset = tokens[:, kept]
    encoded, reference = run_compiled(lambda m, x: (m.encode(x, tube_masked=True), reference_encode(m, x)),
                                      (model,), subset)
    np.testing.assert_allclose(encoded, reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="attention=global"):
        model.encode(subset)


# --- inflation of a 2D ViT ----------------------------------------------------------------


@pytest.mark.parametrize("attention, mode, pool", [("global", "average", "mean"), ("factorised", "centre", "map"),
                                                   ("local_global", "average", "mean")])
def test_inflated_tower_on_identical_slices_gives_2d_features(attention, mode, pool):
    # Every depth token equals the 2D token, so attention over gd (or slab) copies of each key
    # averages the same values; factorised depth attention starts as the identity (zero output
    # projection). Layers scanned in 2D and unrolled in 3D: the copy maps layer to layer.
    vit2d = ViT(ViTConfig(patch_size=4, width=16, depth=3, heads=2, mlp_ratio=2.0, pool=pool), (8, 8),
                scan_layers=True, rngs=nnx.Rngs(3))
    vit3d = build(config(attention, pool), scan=attention == "global")
    inflate_from_vit2d(vit2d, vit3d, mode)
    image = volume(shape=(8, 8))
    stacked = jnp.repeat(image[:, None], VOLUME[0], axis=1)
    features3d, features2d = run_compiled(lambda v3, v2, x3, x2: (v3(x3), v2(x2)), (vit3d, vit2d), stacked, image)
    np.testing.assert_allclose(features3d, features2d, rtol=1e-5, atol=1e-5)


def test_inflation_of_kernel_position_and_cls():
    vit2d = ViT(ViTConfig(patch_size=4, width=16, depth=3, heads=2, mlp_ratio=2.0, pool="cls"), (16, 16),
                scan_layers=False, rngs=nnx.Rngs(3))
    vit3d = build(config("local_global", "cls"), scan=True)
    inflate_from_vit2d(nnx.state(vit2d, nnx.Param), vit3d, "centre")
    kernel = np.asarray(vit3d.patch_embed.kernel[...]).reshape(2, 16, 16)
    np.testing.assert_array_equal(kernel[0], 0.0)
    np.testing.assert_array_equal(kernel[1], vit2d.patch_embed.kernel[...])
    pos2d = np.asarray(vit2d.pos_emb[...])
    np.testing.assert_allclose(vit3d.cls_token[...], vit2d.cls_token[...] + pos2d[0])
    # The 4 x 4 plane of 2D positions is resized to the tower's 2 x 2 and repeated along depth.
    plane = jax.image.resize(pos2d[1:].reshape(4, 4, 16), (2, 2, 16), "bilinear", antialias=False)
    np.testing.assert_allclose(vit3d.pos_emb[...], np.broadcast_to(plane, (4, 2, 2, 16)), rtol=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        inflate_from_vit2d(vit2d, nnx.eval_shape(lambda: build(config(depth=6))))


# --- position embeddings at another volume size ---------------------------------------------


def test_pos_emb_resize():
    pos = jax.random.normal(jax.random.key(0), (4, 2, 2, 8))
    np.testing.assert_array_equal(resize_pos_emb(pos, (4, 2, 2)), pos)
    assert resize_pos_emb(pos, (6, 3, 5)).shape == (6, 3, 5, 8)
    constant = jnp.broadcast_to(jnp.arange(8.0), (4, 2, 2, 8))
    np.testing.assert_allclose(resize_pos_emb(constant, (2, 5, 3)), jnp.broadcast_to(jnp.arange(8.0), (2, 5, 3, 8)),
                               rtol=1e-6)
    # A tower trained at 8^3 (its parameters as a checkpoint holds them) fits one at 8 x 16 x 16.
    cfg = config()
    trained = nnx.to_pure_dict(nnx.state(build(cfg), nnx.Param))
    adapted = ViT3D.adapt_pretrained(trained, cfg, (8, 16, 16))
    bigger = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: build(cfg, shape=(8, 16, 16))), nnx.Param))
    assert jax.tree.map(np.shape, adapted) == jax.tree.map(np.shape, bigger)
    np.testing.assert_allclose(adapted["pos_emb"], resize_pos_emb(trained["pos_emb"], (4, 4, 4)))
    assert adapted["encoder"] is trained["encoder"]


# --- what the tower declares --------------------------------------------------------------


def _param_leaves(model: nnx.Module) -> list:
    return jax.tree.leaves(nnx.state(model, nnx.Param))


@pytest.mark.parametrize("attention", LAYOUTS)
@pytest.mark.parametrize("pool", ["cls", "mean", "map"])
@pytest.mark.parametrize("scan", [True, False])
def test_param_count_and_logical_names(attention, pool, scan):
    if attention == "factorised" and pool == "cls":
        pytest.skip("refused by check (test_check_refuses)")
    cfg = config(attention, pool, depth=6)
    model = nnx.eval_shape(lambda: build(cfg, scan=scan, channels=2))
    assert ViT3D.param_count(cfg, VOLUME, channels=2) == sum(leaf.size for leaf in _param_leaves(model))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata().get("out_sharding")
        assert isinstance(names, tuple) and len(names) == len(var.get_value().shape), (path, names)
        assert set(names) <= VOCAB, (path, names)
        assert ("layers" in names) == (scan and "encoder" in path), (path, names)
    assert not nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.Param)))


def matmul_flops(jaxpr) -> int:
    """2 x multiply-adds of every dot_general in a jaxpr and the jaxprs it calls."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += matmul_flops(inner) * eqn.params.get("length", 1)
    return total


@pytest.mark.parametrize("attention, pool", [("global", "cls"), ("factorised", "map"), ("local_global", "cls"),
                                             ("local_global", "mean")])
def test_costs_count_every_matmul(attention, pool):
    cfg = config(attention, pool)
    model = build(cfg, channels=2)
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, volume(batch=1, channels=2))
    costs = ViT3D.costs(cfg, VOLUME, channels=2)
    assert costs.input_flops + costs.blocks_flops + costs.head_flops == matmul_flops(jaxpr.jaxpr)


def test_check_refuses():
    with pytest.raises(ConfigError, match="pool=cls"):
        ViT3D.check(config("factorised", "cls"), VOLUME)
    with pytest.raises(ConfigError, match="slab=3"):
        ViT3D.check(config("local_global", slab=3), VOLUME)
    with pytest.raises(ConfigError, match="global_every"):
        ViT3D.check(config("local_global", depth=4), VOLUME)
    with pytest.raises(ConfigError, match="volumes"):
        ViT3D.check(config(), (8, 8))
    with pytest.raises(ConfigError, match="nearest sizes that are: W 6 -> 4 or 8"):
        ViT3D.check(config(), (8, 8, 6))
    assert ViT3D.mask_tube(config(), VOLUME) == VOLUME[0] // config().tubelet[0]


def test_registered_and_set_from_the_command_line():
    config_ = apply_overrides(ExperimentConfig(), ["model.image.name=vit3d", "model.image.tubelet=2,16,16",
                                                   "model.image.attention=local_global"])
    assert config_.model.image == ViT3DConfig(tubelet=(2, 16, 16), attention="local_global")
    assert towers.IMAGE_TOWERS["vit3d"] is ViT3D
    ct_clip = presets.vit3d("B")
    assert (ct_clip.width, ct_clip.depth, ct_clip.heads, ct_clip.tubelet) == (768, 12, 12, (10, 20, 20))


# --- scanned and unrolled layers, remat, jit and grad --------------------------------------


def unstacked(state: nnx.State) -> dict:
    """Parameters (or gradients) as an unrolled tower lays them out: {path: array}, a scanned
    stack's leaves split into layers/<i>/...."""
    flat = {}
    for path, var in nnx.to_flat_state(state):
        i = path.index("layers") + 1 if "layers" in path else 0
        if i and not isinstance(path[i], int):
            for layer, value in enumerate(var[...]):
                flat[path[:i] + (layer,) + path[i:]] = value
        else:
            flat[path] = var[...]
    return flat


def jitted_grads(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    """(features, loss, gradients {path: array} in the unrolled layout) under jit."""
    graphdef, state = nnx.split(model)

    def loss(state, x):
        features = nnx.merge(graphdef, state)(x)
        return jnp.mean(jnp.sin(features)), features

    (value, features), grads = run_compiled(jax.value_and_grad(loss, has_aux=True), (), state, x)
    return features, value, unstacked(grads)


@pytest.mark.parametrize("attention", LAYOUTS)
def test_scanned_with_remat_equals_unrolled(attention):
    # Scanned layers under remat against unrolled ones without: a difference in either shows.
    depth = 4 if attention == "local_global" else 2  # two scanned units each
    cfg = config(attention, "cls" if attention != "factorised" else "mean", depth=depth, global_every=2)
    x = volume()
    scanned = build(cfg, remat="full" if attention == "global" else "dots_no_batch")
    unrolled = build(cfg, scan=False, seed=1)
    nnx.update(unrolled, nnx.from_flat_state(unstacked(nnx.state(scanned, nnx.Param))))
    features, loss, grads = jitted_grads(scanned, x)
    ref_features, ref_loss, ref_grads = jitted_grads(unrolled, x)
    np.testing.assert_allclose(features, ref_features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-7)
    assert grads.keys() == ref_grads.keys()
    for path, grad in grads.items():
        np.testing.assert_allclose(grad, ref_grads[path], rtol=1e-4, atol=1e-6, err_msg=str(path))


# --- MAE ------------------------------------------------------------------------------------


def test_mae_trains_a_global_tower_on_random_subsets():
    cfg = ModelConfig(image=config("global", "cls"), mae_decoder=PixelDecoderConfig(width=16, depth=1, heads=2))
    model = MaskedAutoencoder(cfg, VOLUME, mask_ratio=0.75, rngs=nnx.Rngs(0))
    x = volume()
    out = run_compiled(lambda m, x, noise: m(x, noise), (model,), x, jax.random.uniform(jax.random.key(2), (2, 16)))
    assert out["pred"].shape == out["target"].shape == (2, 16, 32)
    np.testing.assert_array_equal(out["target"], patchify(x, (2, 4, 4)))
    assert out["mask"].sum() == 2 * 12
