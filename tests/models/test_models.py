"""Models: shapes, logical axis names, scan == loop, remat, bfloat16, padding, presets."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax.config import presets
from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.layers import Transformer
from radfm_jax.models.text import TextTransformerConfig
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.models.vit import ViT, ViTConfig, patchify

VOCAB = {"batch", "seq", "embed", "mlp", "heads", "head_dim", "vocab", "layers", "patch", "proj"}
VOCAB_SIZE, MAX_LEN, IMAGE_SIZE = 50, 12, 16


def small_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        image=ViTConfig(patch_size=4, width=32, depth=2, heads=4, pool="mean"),
        text=TextTransformerConfig(width=24, depth=2, heads=2, pool="eos"),
        embed_dim=16,
        scan_layers=True,
    )
    return dataclasses.replace(cfg, **overrides)


def make_model(cfg: ModelConfig, seed: int = 0) -> TwoTower:
    return TwoTower(cfg, VOCAB_SIZE, MAX_LEN, (IMAGE_SIZE, IMAGE_SIZE), rngs=nnx.Rngs(seed))


def inputs(batch: int = 3) -> tuple[jax.Array, jax.Array]:
    images = jax.random.normal(jax.random.key(1), (batch, IMAGE_SIZE, IMAGE_SIZE, 1))
    tokens = jnp.array(
        [[5, 9, 2, 7, 3, 0, 0, 0], [4, 3, 0, 0, 0, 0, 0, 0], [8, 8, 6, 1, 2, 9, 4, 3]]
    )[:batch]
    return images, tokens


@nnx.jit
def forward(model: TwoTower, images: jax.Array, tokens: jax.Array) -> dict[str, jax.Array]:
    return model(images, tokens)


@nnx.jit
def encode_text(model: TwoTower, tokens: jax.Array) -> jax.Array:
    return model.encode_text(tokens)


def with_pools(cfg: ModelConfig, image_pool: str, text_pool: str) -> ModelConfig:
    return dataclasses.replace(
        cfg,
        image=dataclasses.replace(cfg.image, pool=image_pool),
        text=dataclasses.replace(cfg.text, pool=text_pool),
    )


@pytest.mark.parametrize(
    "image_pool,text_pool", [("cls", "eos"), ("mean", "mean"), ("map", "eos")]
)
def test_outputs_are_normalised_embeddings(image_pool, text_pool):
    cfg = with_pools(small_config(), image_pool, text_pool)
    out = forward(make_model(cfg), *inputs())
    for key in ("image_emb", "text_emb"):
        assert out[key].shape == (3, cfg.embed_dim)
        assert out[key].dtype == jnp.float32
        np.testing.assert_allclose(jnp.linalg.norm(out[key], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["logit_scale"], cfg.init_temperature, rtol=1e-5)
    np.testing.assert_allclose(out["logit_bias"], cfg.init_bias)


@pytest.mark.parametrize("scan_layers", [True, False])
@pytest.mark.parametrize("image_pool", ["cls", "map"])
def test_every_param_has_logical_axis_names(scan_layers, image_pool):
    cfg = with_pools(small_config(scan_layers=scan_layers), image_pool, "eos")
    model = make_model(cfg)
    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert len(params) > 20
    for path, var in params:
        names = var.get_metadata().get("out_sharding")
        assert isinstance(names, tuple), path
        assert len(names) == var[...].ndim, (path, names, var[...].shape)
        assert set(names) <= VOCAB, (path, names)
        assert var[...].dtype == jnp.float32, path
        assert ("layers" in names) == (scan_layers and "encoder" in path), (path, names)
    # Parameters are the whole state, so the partition spec tree covers everything.
    assert not nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.Param)))
    # The trainer reads the names back as PartitionSpecs of logical axes.
    specs = nnx.to_flat_state(nnx.get_partition_spec(nnx.state(model, nnx.Param)))
    for (path, spec), (_, var) in zip(specs, params, strict=True):
        assert tuple(spec.get_value()) == var.get_metadata()["out_sharding"], path


def unstacked_params(scanned: TwoTower) -> nnx.State:
    """The scanned model's params laid out as per-layer modules: layers/<i>/... paths."""
    flat = {}
    for path, var in nnx.to_flat_state(nnx.state(scanned, nnx.Param)):
        if "layers" in path:
            i = path.index("layers") + 1
            for layer, value in enumerate(var[...]):
                flat[path[:i] + (layer,) + path[i:]] = value
        else:
            flat[path] = var[...]
    return nnx.from_flat_state(flat)


def test_scan_matches_loop():
    cfg = with_pools(small_config(), "map", "eos")
    scanned = make_model(cfg, seed=0)
    looped = make_model(dataclasses.replace(cfg, scan_layers=False), seed=1)
    new_params = unstacked_params(scanned)
    looped_paths = {p for p, _ in nnx.to_flat_state(nnx.state(looped, nnx.Param))}
    assert looped_paths == {p for p, _ in nnx.to_flat_state(new_params)}
    nnx.update(looped, new_params)
    a, b = forward(scanned, *inputs()), forward(looped, *inputs())
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5)


@nnx.jit
def stack_loss_and_grads(stack: Transformer, x: jax.Array) -> tuple[jax.Array, nnx.State]:
    mask = jnp.arange(x.shape[1]) < jnp.array([[5], [3]])
    return nnx.value_and_grad(lambda s: jnp.mean(jnp.sin(s(x, mask))))(stack)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_remat_gives_same_outputs_and_gradients(scan_layers):
    def stack(remat: bool) -> Transformer:
        return Transformer(
            16, 3, 2, 32, dtype=jnp.float32, scan_layers=scan_layers, remat=remat, rngs=nnx.Rngs(0)
        )

    x = jax.random.normal(jax.random.key(0), (2, 6, 16))
    loss, grads = stack_loss_and_grads(stack(remat=False), x)
    loss_r, grads_r = stack_loss_and_grads(stack(remat=True), x)
    graphdef, state = nnx.split(stack(remat=True))
    assert "remat" in str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(x))(state))
    np.testing.assert_allclose(loss, loss_r, rtol=1e-6)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, grads, grads_r)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    cfg = with_pools(small_config(), "map", "eos")
    ref = forward(make_model(cfg), *inputs())
    model = make_model(dataclasses.replace(cfg, compute_dtype="bfloat16"))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        assert var[...].dtype == jnp.float32, path
    out = forward(model, *inputs())
    for key in ("image_emb", "text_emb"):
        assert out[key].dtype == jnp.float32
        np.testing.assert_allclose(out[key], ref[key], atol=5e-2)
        assert not np.allclose(out[key], ref[key], atol=1e-7)  # really computed in bfloat16


@pytest.mark.parametrize("text_pool", ["eos", "mean"])
def test_text_embedding_ignores_extra_padding(text_pool):
    model = make_model(with_pools(small_config(), "mean", text_pool))
    _, tokens = inputs()
    padded = jnp.pad(tokens, ((0, 0), (0, MAX_LEN - tokens.shape[1])))
    np.testing.assert_allclose(encode_text(model, tokens), encode_text(model, padded), atol=1e-5)


def test_text_eos_pool_reads_last_real_token():
    model = make_model(small_config())
    _, tokens = inputs()
    changed = tokens.at[1, 0].set(11)  # an earlier token of row 1: its embedding changes
    a, b = encode_text(model, tokens), encode_text(model, changed)
    np.testing.assert_allclose(a[::2], b[::2], atol=1e-6)
    assert not np.allclose(a[1], b[1], atol=1e-4)


def test_patchify_layout():
    image = jnp.arange(2 * 8 * 12 * 3, dtype=jnp.float32).reshape(2, 8, 12, 3)
    patches = patchify(image, 4)
    assert patches.shape == (2, 6, 4 * 4 * 3)
    np.testing.assert_array_equal(patches[1, 4], image[1, 4:8, 4:8].reshape(-1))
    with pytest.raises(ValueError, match="divisible"):
        patchify(image, 5)


def test_presets():
    widths = {s: presets.vit(s).width for s in ("Ti", "S", "B", "L")}
    assert widths == {"Ti": 192, "S": 384, "B": 768, "L": 1024}
    large = presets.vit("L", 14, pool="map")
    assert (large.depth, large.heads, large.mlp_ratio, large.patch_size, large.pool) == (
        24, 16, 4.0, 14, "map"
    )
    assert presets.text("S").width == 384
    with pytest.raises(ValueError, match="Ti, S, B, L"):
        presets.vit("H")


def test_vit_b16_has_86m_params():
    cfg = presets.vit("B", 16, pool="cls")
    model = nnx.eval_shape(lambda: ViT(cfg, (224, 224), channels=3, rngs=nnx.Rngs(0)))
    count = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    # timm's RGB vit_base_patch16_224 has 86,567,656 params, 769,000 of them in its class head;
    # ours has no attention key bias (12 layers x 768).
    assert count == 86_567_656 - 769_000 - 12 * 768
