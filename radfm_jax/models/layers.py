"""Transformer building blocks shared by the image and text towers.

Every parameter is created through `nnx.with_partitioning` with logical axis names from the
vocabulary in parallel/rules.py. Matmuls run in `dtype` (the compute dtype) while parameters stay
float32; LayerNorm, attention softmax and the residual stream are float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from jax.typing import DTypeLike as Dtype

from radfm_jax.errors import ConfigError
from radfm_jax.parallel.activations import constrain_batch

Names = tuple[str, ...]

LAYERS_AXIS = "layers"  # logical name of the leading axis of scanned (stacked) layer params

# What each block keeps for the backward pass (the rest is recomputed), by `model.remat` name.
# "none" keeps everything (no remat); "full" keeps only the block's input; "dots" keeps every
# matmul output; "dots_no_batch" keeps matmuls without batch dimensions (the projections and
# MLP, not the attention logits); "save_qkv_proj" keeps only the query/key/value projections.
_policies = jax.checkpoint_policies
REMAT_POLICIES: dict[str, Callable[..., bool]] = {
    "full": _policies.nothing_saveable,
    "dots": _policies.dots_saveable,
    "dots_no_batch": _policies.dots_with_no_batch_dims_saveable,
    "save_qkv_proj": _policies.save_only_these_names("query_proj", "key_proj", "value_proj"),
}
REMAT_NAMES = ("none", *REMAT_POLICIES)


def remat_policy_name(remat: bool | str) -> str:
    """A `model.remat` value as a policy name; bools of older configs mean "full" / "none"."""
    if isinstance(remat, bool):
        return "full" if remat else "none"
    if remat not in REMAT_NAMES:
        raise ValueError(f"unknown remat policy {remat!r}; use one of {list(REMAT_NAMES)}")
    return remat


def check_heads(width: int, heads: int, key: str) -> None:
    """A ConfigError unless the `key` tower's width splits into its attention heads."""
    if width % heads:
        raise ConfigError(f"{key}.width={width} is not divisible by {key}.heads={heads}")


def named(init: Callable, names: Names) -> Callable:
    """An initializer whose variables carry the logical axis `names`. They are not sharded
    when created (eager_sharding=False, whatever Flax's global default): the trainer places
    them itself, by a jitted initialiser with output shardings (train/state.py)."""
    return nnx.with_partitioning(init, names, eager_sharding=False)


def param(init: Callable, shape: tuple[int, ...], names: Names, rngs: nnx.Rngs) -> nnx.Param:
    """A float32 parameter of `shape` with logical axis `names` (rank must match)."""
    assert len(shape) == len(names), (shape, names)
    return nnx.Param(named(init, names)(rngs.params(), shape, jnp.float32))


Activation = Literal["gelu_tanh", "gelu", "quick_gelu"]
# The MLP's nonlinearity, by the towers' `act` name: "gelu_tanh" (the tanh approximation),
# "gelu" (exact, erf: open_clip's nn.GELU, BERT), "quick_gelu" (x * sigmoid(1.702 x): OpenAI
# CLIP and the Hugging Face CLIP default).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
}


def layer_norm(width: int, rngs: nnx.Rngs, eps: float = 1e-6) -> nnx.LayerNorm:
    """Float32 LayerNorm over the `embed` axis."""
    return nnx.LayerNorm(
        width,
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_init=named(nnx.initializers.ones_init(), ("embed",)),
        bias_init=named(nnx.initializers.zeros_init(), ("embed",)),
        rngs=rngs,
    )


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Low-rank adapters (Hu et al. 2021) on the projections of `targets` ("attention": q, k, v
    and output; "mlp": both layers): W x + (alpha / rank) * B A x with A, B of rank `rank`."""

    rank: int
    alpha: float
    targets: tuple[str, ...] = ("attention", "mlp")

    def on(self, target: str) -> LoraSpec | None:
        """This spec where `target` is adapted, else None."""
        return self if target in self.targets else None


class LoraLinearGeneral(nnx.LinearGeneral):
    """A LinearGeneral plus a scaled low-rank update (flax.nnx.LoRA) of its flattened input and
    output. Kernel and bias keep LinearGeneral's names and shapes, so pretrained weights load
    unchanged; the adapter's B starts at zero, so the layer starts as the pretrained one."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], names: Names, lora: LoraSpec, *,
                 dtype: Dtype, rngs: nnx.Rngs, **kwargs):
        super().__init__(in_shape, out_shape, dtype=dtype, rngs=rngs, **kwargs)
        self.out_shape = out_shape
        self.scale = lora.alpha / lora.rank
        # The adapter's fan-in / fan-out axes shard like the kernel's first input / output axes.
        in_name, out_name = names[0], names[len(in_shape)]
        self.lora = nnx.LoRA(
            math.prod(in_shape), lora.rank, math.prod(out_shape), dtype=dtype, param_dtype=jnp.float32,
            a_metadata={"out_sharding": (in_name, None), "eager_sharding": False},
            b_metadata={"out_sharding": (None, out_name), "eager_sharding": False}, rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        flat = x.reshape(*x.shape[: x.ndim - len(self.in_features)], -1)
        delta = self.scale * self.lora(flat)
        return y + delta.reshape(*delta.shape[:-1], *self.out_shape).astype(y.dtype)


def dense(
    in_features: int | tuple[int, ...],
    out_features: int | tuple[int, ...],
    names: Names,
    *,
    dtype: Dtype,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    lora: LoraSpec | None = None,
) -> nnx.LinearGeneral:
    """A linear map contracting the trailing `in_features` dims; kernel named `names`; with a
    low-rank adapter when `lora` is given.

    The bias is named by the output part of `names`.
    """
    in_shape = in_features if isinstance(in_features, tuple) else (in_features,)
    out_shape = out_features if isinstance(out_features, tuple) else (out_features,)
    assert len(names) == len(in_shape) + len(out_shape), (in_shape, out_shape, names)
    options = dict(
        axis=tuple(range(-len(in_shape), 0)),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=named(nnx.initializers.xavier_uniform(), names),
        bias_init=named(nnx.initializers.zeros_init(), names[len(in_shape) :]),
        rngs=rngs,
    )
    if lora is not None:
        return LoraLinearGeneral(in_shape, out_shape, names, lora, **options)
    return nnx.LinearGeneral(in_shape, out_shape, **options)


class Attention(nnx.Module):
    """Multi-head dot-product attention with (embed, heads, head_dim) projections.

    Keys and values come from `kv` (cross-attention, width `kv_width`) or from `x`. `mask` is
    True where attention is allowed: (B, Lk) for a key mask, or (B, Lq, Lk) for a per-query
    mask (causal decoding). Logits and softmax are float32. `project_kv` and `attend` are the
    two halves of a call, so a decoder can cache keys and values between generation steps.
    """

    def __init__(self, width: int, heads: int, *, dtype: Dtype, rngs: nnx.Rngs, kv_width: int | None = None,
                 lora: LoraSpec | None = None):
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        head_dim = width // heads
        kv_width = width if kv_width is None else kv_width
        qkv_names = ("embed", "heads", "head_dim")
        adapter = lora.on("attention") if lora else None
        self.query = dense(width, (heads, head_dim), qkv_names, dtype=dtype, rngs=rngs, lora=adapter)
        # No key bias: it shifts each query's logits by a constant, so its true gradient is 0
        # and Adam would only amplify rounding noise in it.
        self.key = dense(
            kv_width, (heads, head_dim), qkv_names, dtype=dtype, rngs=rngs, use_bias=False, lora=adapter
        )
        self.value = dense(kv_width, (heads, head_dim), qkv_names, dtype=dtype, rngs=rngs, lora=adapter)
        self.out = dense(
            (heads, head_dim), width, ("heads", "head_dim", "embed"), dtype=dtype, rngs=rngs, lora=adapter
        )

    def project_kv(self, kv: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(B, Lk, kv_width) -> keys and values, each (B, Lk, heads, head_dim)."""
        # Named so the "save_qkv_proj" remat policy can keep them; a no-op otherwise.
        return checkpoint_name(self.key(kv), "key_proj"), checkpoint_name(self.value(kv), "value_proj")

    def attend(self, x: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Queries from x (B, Lq, width) over given keys / values -> (B, Lq, width)."""
        q = checkpoint_name(self.query(x), "query_proj")  # (B, Lq, heads, head_dim)
        if mask is not None:
            mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None, :, :]
        # jax.nn's attention (float32 logits and softmax) lets XLA and cuDNN pick a fused kernel.
        return self.out(jax.nn.dot_product_attention(q, k, v, mask=mask))

    def __call__(
        self, x: jax.Array, kv: jax.Array | None = None, mask: jax.Array | None = None
    ) -> jax.Array:
        return self.attend(x, *self.project_kv(x if kv is None else kv), mask)


class Mlp(nnx.Module):
    """Linear (embed, mlp) -> `act` (ACTIVATIONS) -> linear (mlp, embed)."""

    def __init__(self, width: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs, lora: LoraSpec | None = None,
                 act: str = "gelu_tanh"):
        adapter = lora.on("mlp") if lora else None
        self.act = act
        self.fc1 = dense(width, mlp_dim, ("embed", "mlp"), dtype=dtype, rngs=rngs, lora=adapter)
        self.fc2 = dense(mlp_dim, width, ("mlp", "embed"), dtype=dtype, rngs=rngs, lora=adapter)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(ACTIVATIONS[self.act](self.fc1(x)))


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)); `act`, `norm_eps` and
    `layer_scale` (> 0: learned per-channel scales on both branches, starting there) as the
    tower's config names them (published checkpoints differ in each)."""

    def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs,
                 lora: LoraSpec | None = None, act: str = "gelu_tanh", norm_eps: float = 1e-6,
                 layer_scale: float = 0.0):
        self.norm1 = layer_norm(width, rngs, norm_eps)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs, lora=lora)
        self.norm2 = layer_norm(width, rngs, norm_eps)
        self.mlp = Mlp(width, mlp_dim, dtype=dtype, rngs=rngs, lora=lora, act=act)
        self.scaled = layer_scale > 0
        if self.scaled:  # per-channel scales of both residual branches (CaiT, DINOv2)
            start = nnx.initializers.constant(layer_scale)
            self.scale1 = param(start, (width,), ("embed",), rngs)
            self.scale2 = param(start, (width,), ("embed",), rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        x = constrain_batch(x)
        h = self.attn(self.norm1(x), mask=mask)
        x = x + (self.scale1[...] * h if self.scaled else h)
        h = self.mlp(self.norm2(x))
        return x + (self.scale2[...] * h if self.scaled else h)


class PostNormBlock(Block):
    """Post-norm transformer block (BERT): x = ln(x + attn(x)), then x = ln(x + mlp(x)). The
    same parameters as Block, so the towers' sharding and remat treat both alike."""

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        x = constrain_batch(x)
        x = self.norm1(x + self.attn(x, mask=mask))
        return self.norm2(x + self.mlp(x))


def _apply_block(x: jax.Array, block: nnx.Module, *args) -> jax.Array:
    return block(x, *args)


def _step_block(x: jax.Array, block: nnx.Module, cache, *args):
    return block.step(x, cache, *args)


class Transformer(nnx.Module):
    """A stack of `depth` blocks (`block`: Block, or a decoder block with the same constructor).

    With `scan_layers`, `self.layers` is ONE block whose params have a leading `layers` axis of
    size `depth` (built with nnx.vmap, applied with nnx.scan); otherwise it is an nnx.List of
    `depth` blocks. `remat` names a policy of REMAT_POLICIES (or "none"): what each block saves
    for the backward pass, the rest being recomputed. `block_options` go to every block
    (layers.Block: `act`, `norm_eps`).
    """

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        *,
        dtype: Dtype,
        scan_layers: bool,
        remat: bool | str,
        rngs: nnx.Rngs,
        block: Callable[..., nnx.Module] = Block,
        lora: LoraSpec | None = None,
        **block_options,
    ):
        self.scan_layers = scan_layers
        self.remat = remat_policy_name(remat)
        self.depth = depth
        adapters = {"lora": lora} if lora else {}  # blocks that take adapters (layers.Block)
        make = functools.partial(block, width, heads, mlp_dim, dtype=dtype, **adapters, **block_options)
        if scan_layers:

            @nnx.split_rngs(splits=depth)
            @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: LAYERS_AXIS})
            def make_stack(rngs: nnx.Rngs) -> nnx.Module:
                return make(rngs=rngs)

            self.layers = make_stack(rngs)
        else:
            self.layers = nnx.List([make(rngs=rngs) for _ in range(depth)])

    def __call__(self, x: jax.Array, *args) -> jax.Array:
        """x through every block; `args` (masks, context) go unchanged to each."""
        apply = _apply_block
        if self.remat != "none":
            apply = nnx.remat(
                apply, prevent_cse=not self.scan_layers, policy=REMAT_POLICIES[self.remat]
            )
        if self.scan_layers:
            apply = nnx.scan(
                apply,
                in_axes=(nnx.Carry, 0, *(None,) * len(args)),
                out_axes=nnx.Carry,
                transform_metadata={nnx.PARTITION_NAME: LAYERS_AXIS},
            )
            return apply(x, self.layers, *args)
        for block in self.layers:
            x = apply(x, block, *args)
        return x

    def step(self, x: jax.Array, caches, *args):
        """One generation step through blocks with a `step(x, cache, *args) -> (x, cache)`
        method; `caches` leaves have a leading layers axis. Returns (x, new caches)."""
        if self.scan_layers:
            stepped = nnx.scan(
                _step_block,
                in_axes=(nnx.Carry, 0, 0, *(None,) * len(args)),
                out_axes=(nnx.Carry, 0),
                transform_metadata={nnx.PARTITION_NAME: LAYERS_AXIS},
            )
            return stepped(x, self.layers, caches, *args)
        updated = []
        for index, block in enumerate(self.layers):
            layer_cache = jax.tree.map(lambda leaf, i=index: leaf[i], caches)
            x, cache = block.step(x, layer_cache, *args)
            updated.append(cache)
        return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *updated)
