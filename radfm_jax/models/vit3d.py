"""3D Vision Transformer image tower for CT / MR volumes (`model.image.name = "vit3d"`).

Input (B, D, H, W, C) float32 volumes; output (B, width) float32. The volume is cut into
tubelets of (pd, ph, pw) voxels (`vit.patchify` with a per-axis patch), one token each, in
depth-major order over the token grid (gd, gh, gw); each token gets a learned 3D position
embedding of shape (gd, gh, gw, width) (`resize_pos_emb` moves it to another volume size).
The tower has ViT's interface (models/towers.py), so every objective uses it unchanged.

Attention layouts (`attention`), all pre-norm blocks of models/layers.py with scanned layers:

- "global": every layer attends over all tokens (ViT over a 3D grid).
- "factorised": divided space / depth attention (CT-ViT, TimeSformer): each block attends within
  each slice (the gh*gw tokens of one depth index), then along depth (the gd tokens of one (h, w)
  position), then its MLP: `FactorisedBlock`, reshapes around layers.Attention.
- "local_global": HLIP's slab attention: layers attend within slabs of `slab` depth slices
  (gh*gw*slab tokens), every `global_every`-th layer over the whole volume. Layers run in groups
  of `global_every` (`global_every - 1` slab blocks, then one global block) and the groups are
  scanned, so compile time stays flat in depth; a model.remat policy applies per group there.

The cls token (pool="cls") takes part in global attention only: under "local_global" it skips
the slab layers (passes through unchanged) and joins every global layer; "factorised" has no
global layer, so pool="cls" is a ConfigError there (pool="mean" or "map" pool every token).

MAE: the encoder sees a subset of the patch tokens. The MAE objective masks tubes (`mask_tube`:
the same (h, w) positions at every depth, so a hidden finding cannot be copied from the next
slab) and passes them depth-major (`encode(tokens, tube_masked=True)`): the tokens then form a
(gd, kept) grid and slice, depth and slab attention work on it. "global" takes any subset; the
other layouts refuse a subset that is not tube-masked.

`inflate_from_vit2d` starts the tower from a trained 2D ViT (I3D-style inflation);
`ViT3D.adapt_pretrained` resizes a pretrained tower's position embedding to another volume size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from radfm_jax.config.ranges import positive
from radfm_jax.config.schema import ImageTowerConfig
from radfm_jax.errors import ConfigError
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params, map_head_flops
from radfm_jax.models.layers import (
    Attention,
    Block,
    Dtype,
    LoraSpec,
    Mlp,
    Transformer,
    check_heads,
    dense,
    layer_norm,
    param,
)
from radfm_jax.models.vit import MapHead, ViT, patchify
from radfm_jax.parallel.activations import constrain_batch

Grid = tuple[int, int, int]
# Logical names of the position embedding's token-grid axes (unsharded) and its embed axis.
POS_EMB_NAMES = ("seq_depth", "seq_height", "seq_width", "embed")


@dataclasses.dataclass(frozen=True)
class ViT3DConfig(ImageTowerConfig):
    """A 3D ViT over tubelets. Use radfm_jax.config.presets.vit3d(...) for the named sizes."""

    name: Literal["vit3d"] = dataclasses.field(default="vit3d", init=False)
    tubelet: tuple[int, int, int] = positive((4, 8, 8))  # (depth, height, width) voxels per token
    width: int = positive(192)
    depth: int = positive(12)
    heads: int = positive(3)
    mlp_ratio: float = positive(4.0)
    pool: Literal["cls", "mean", "map"] = "mean"  # map = multihead attention pooling
    attention: Literal["global", "factorised", "local_global"] = "global"
    slab: int = positive(2)  # local_global: depth tokens per slab of local attention
    global_every: int = positive(3)  # local_global: every k-th layer attends over the whole volume


def token_grid(cfg: ViT3DConfig, image_shape: tuple[int, ...]) -> Grid:
    """(gd, gh, gw): tokens along each axis of a (D, H, W) volume."""
    gd, gh, gw = (size // patch for size, patch in zip(image_shape, cfg.tubelet))
    return gd, gh, gw


def resize_pos_emb(pos_emb: jax.Array, grid: Grid) -> jax.Array:
    """(gd, gh, gw, width) position embeddings -> (*grid, width), trilinear with half-voxel
    centres (align_corners=False) and no antialiasing, so a tower trained at one volume size
    loads at another; unchanged at the same size."""
    if tuple(pos_emb.shape[:3]) == tuple(grid):
        return pos_emb
    return jax.image.resize(pos_emb, (*grid, pos_emb.shape[-1]), method="trilinear", antialias=False)


class FactorisedBlock(nnx.Module):
    """Pre-norm block with divided attention: x + attn(ln(x)) within each slice, then
    x + temporal_attn(ln(x)) along depth at each (h, w), then x + mlp(ln(x)).

    Tokens (B, slices * per_slice, width) in depth-major order; `per_slice` comes from the
    token count, so a tube-masked subset (the same positions in every slice) works too.
    """

    def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs, slices: int,
                 lora: LoraSpec | None = None):
        self.slices = slices
        self.norm1 = layer_norm(width, rngs)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs, lora=lora)
        self.temporal_norm = layer_norm(width, rngs)
        self.temporal_attn = Attention(width, heads, dtype=dtype, rngs=rngs, lora=lora)
        self.norm2 = layer_norm(width, rngs)
        self.mlp = Mlp(width, mlp_dim, dtype=dtype, rngs=rngs, lora=lora)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = constrain_batch(x)
        b, n, w = x.shape
        d, s = self.slices, n // self.slices
        y = x.reshape(b * d, s, w)  # one sequence per slice
        y = y + self.attn(self.norm1(y))
        y = y.reshape(b, d, s, w).swapaxes(1, 2).reshape(b * s, d, w)  # one sequence per (h, w)
        y = y + self.temporal_attn(self.temporal_norm(y))
        x = y.reshape(b, s, d, w).swapaxes(1, 2).reshape(b, n, w)
        return x + self.mlp(self.norm2(x))


class LocalGlobalGroup(nnx.Module):
    """`local_layers` blocks within slabs of `slab` slices, then one block over every token.

    Tokens (B, has_cls + slices * per_slice, width), the cls token (if `has_cls`) first: it
    skips the slab blocks and joins the global one.
    """

    def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype: Dtype, rngs: nnx.Rngs, local_layers: int,
                 slices: int, slab: int, has_cls: bool, lora: LoraSpec | None = None):
        self.windows = slices // slab
        self.leading = int(has_cls)
        self.local = nnx.List([Block(width, heads, mlp_dim, dtype=dtype, rngs=rngs, lora=lora)
                               for _ in range(local_layers)])
        self.global_block = Block(width, heads, mlp_dim, dtype=dtype, rngs=rngs, lora=lora)

    def __call__(self, x: jax.Array) -> jax.Array:
        lead, tokens = x[:, : self.leading], x[:, self.leading :]
        b, n, w = tokens.shape
        # Depth-major tokens: each slab is a contiguous run of n / windows tokens.
        y = tokens.reshape(b * self.windows, n // self.windows, w)
        for block in self.local:
            y = block(y)
        x = jnp.concatenate([lead, y.reshape(b, n, w)], axis=1)
        return self.global_block(x)


class ViT3D(nnx.Module):
    """Tubelet embedding + 3D position embedding + pre-norm blocks (global, factorised or
    local/global attention) + final norm + pooling. Same interface as ViT."""

    Config = ViT3DConfig

    def __init__(
        self,
        cfg: ViT3DConfig,
        image_shape: tuple[int, ...],
        *,
        channels: int = 1,
        dtype: Dtype = jnp.float32,
        scan_layers: bool = True,
        remat: bool | str = False,
        rngs: nnx.Rngs,
        lora: LoraSpec | None = None,
    ):
        """`lora`: low-rank adapters on the blocks' projections (fine-tuning)."""
        self.check(cfg, image_shape)
        self.patch_size = tuple(cfg.tubelet)  # what patchify (and MAE's targets) cut by
        self.pool = cfg.pool
        self.width = cfg.width
        self.attention = cfg.attention
        self.depth = cfg.depth
        self.global_every = cfg.global_every
        self.grid = token_grid(cfg, image_shape)
        self.num_patches = math.prod(self.grid)
        self.patch_dim = self.patch_dim_of(cfg, image_shape, channels)
        width, mlp_dim = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.patch_embed = dense(self.patch_dim, width, ("patch", "embed"), dtype=dtype, rngs=rngs)
        self.pos_emb = param(nnx.initializers.normal(0.02), (*self.grid, width), POS_EMB_NAMES, rngs)
        if cfg.pool == "cls":
            # No position of its own: a learned token needs none (ViT's cls position folds into it).
            self.cls_token = param(nnx.initializers.normal(0.02), (width,), ("embed",), rngs)
        block: Any = Block
        units = cfg.depth
        if cfg.attention == "factorised":
            block = functools.partial(FactorisedBlock, slices=self.grid[0])
        elif cfg.attention == "local_global":
            block = functools.partial(LocalGlobalGroup, local_layers=cfg.global_every - 1, slices=self.grid[0],
                                      slab=cfg.slab, has_cls=cfg.pool == "cls")
            units = cfg.depth // cfg.global_every
        self.encoder = Transformer(
            width, units, cfg.heads, mlp_dim, dtype=dtype, scan_layers=scan_layers, remat=remat, rngs=rngs,
            block=block, lora=lora,
        )
        self.norm = layer_norm(width, rngs)
        if cfg.pool == "map":
            self.map_head = MapHead(width, cfg.heads, mlp_dim, dtype=dtype, rngs=rngs)

    # --- what the tower declares ------------------------------------------------------------

    @staticmethod
    def check(cfg: ViT3DConfig, image_shape: tuple[int, ...], key: str = "model.image") -> None:
        check_heads(cfg.width, cfg.heads, key)
        if len(cfg.tubelet) != 3:
            raise ConfigError(f"{key}.tubelet must be 3 sizes (depth, height, width), got {tuple(cfg.tubelet)}")
        if len(image_shape) != 3:
            raise ConfigError(f"{key}.name=vit3d reads (D, H, W) volumes, but the inputs are {len(image_shape)}D of "
                              f"size {tuple(image_shape)}; use a volumetric data set or {key}.name=vit")
        misfits = [f"{axis} {size} -> {size // patch * patch or patch} or {(size // patch + 1) * patch}"
                   for axis, size, patch in zip("DHW", image_shape, cfg.tubelet) if size % patch]
        if misfits:
            raise ConfigError(f"the volume size {tuple(image_shape)} is not divisible by {key}.tubelet="
                              f"{tuple(cfg.tubelet)}; the nearest sizes that are: {', '.join(misfits)} (the "
                              "volume is (data.input_size / 2, data.input_size, data.input_size))")
        if cfg.attention == "factorised" and cfg.pool == "cls":
            raise ConfigError(f"{key}.pool=cls needs layers that attend over every token, which "
                              f"{key}.attention=factorised has none of; use pool=mean or pool=map, or "
                              "attention=global or local_global")
        if cfg.attention == "local_global":
            slices = image_shape[0] // cfg.tubelet[0]
            if slices % cfg.slab:
                raise ConfigError(f"{key}.slab={cfg.slab} does not divide the {slices} depth tokens (volume "
                                  f"depth {image_shape[0]} / tubelet depth {cfg.tubelet[0]})")
            if cfg.depth % cfg.global_every:
                raise ConfigError(f"{key}.depth={cfg.depth} is not a multiple of {key}.global_every="
                                  f"{cfg.global_every}: layers run in groups of global_every - 1 slab layers "
                                  "and one global layer")

    @staticmethod
    def mask_tube(cfg: ViT3DConfig, image_shape: tuple[int, ...]) -> int:
        """Tokens MAE hides or keeps together: a tube of every depth at one (h, w) position."""
        return token_grid(cfg, image_shape)[0]

    @staticmethod
    def num_patches_of(cfg: ViT3DConfig, image_shape: tuple[int, ...]) -> int:
        return math.prod(token_grid(cfg, image_shape))

    @staticmethod
    def patch_dim_of(cfg: ViT3DConfig, image_shape: tuple[int, ...], channels: int = 1) -> int:
        """Values in one flattened tubelet (what MAE's pixel decoder predicts per patch)."""
        return math.prod(cfg.tubelet) * channels

    @classmethod
    def num_tokens(cls, cfg: ViT3DConfig, image_shape: tuple[int, ...]) -> int:
        """Tokens the encoder's global layers see: one per tubelet, plus the cls token."""
        return cls.num_patches_of(cfg, image_shape) + (cfg.pool == "cls")

    @classmethod
    def costs(cls, cfg: ViT3DConfig, image_shape: tuple[int, ...], channels: int = 1, *,
              patches: int | None = None) -> TowerCosts:
        """Per example forward: the tubelet embedding of every patch, the blocks over `patches`
        of them (default all; for factorised / local_global a tube-masked subset, patches / gd
        per slice) and the pooling head.

        Each layout is stacks of blocks whose FLOPs add up exactly and whose activation bytes
        follow the remat units the encoder scans (models/costs.py, BlockStack): a factorised
        layer is one divided block, attending within the gd slices of gh*gw tokens and then
        along depth at each of the gh*gw positions; a local_global group's slab layers attend
        within gd / slab slabs of slab*gh*gw tokens and run inside the group with its global
        layer, which remat recomputes as one unit.
        """
        all_patches = cls.num_patches_of(cfg, image_shape)
        kept = all_patches if patches is None else patches
        cls_tokens = int(cfg.pool == "cls")
        w, m, h = cfg.width, int(cfg.width * cfg.mlp_ratio), cfg.heads
        slices = token_grid(cfg, image_shape)[0]
        per_slice = kept // slices
        if cfg.attention == "global":
            stacks = (BlockStack(kept + cls_tokens, w, m, h, cfg.depth),)
        elif cfg.attention == "factorised":
            stacks = (BlockStack(per_slice, w, m, h, cfg.depth, sequences=slices, divided=True),)
        else:
            global_layers = cfg.depth // cfg.global_every
            windows = slices // cfg.slab
            stacks = (BlockStack(kept + cls_tokens, w, m, h, global_layers),)
            if cfg.global_every > 1:
                stacks = (BlockStack(kept // windows, w, m, h, cfg.depth - global_layers, sequences=windows,
                                     group_layers=cfg.global_every - 1), *stacks)
        patch_embed = 2 * all_patches * cls.patch_dim_of(cfg, image_shape, channels) * w
        head = map_head_flops(kept + cls_tokens, w, m) if cfg.pool == "map" else 0.0
        return TowerCosts(width=w, input_flops=float(patch_embed), stacks=stacks, head_flops=float(head))

    @classmethod
    def param_count(cls, cfg: ViT3DConfig, image_shape: tuple[int, ...], channels: int = 1) -> int:
        w, m = cfg.width, int(cfg.width * cfg.mlp_ratio)
        patch_embed = (cls.patch_dim_of(cfg, image_shape, channels) + 1) * w
        position = cls.num_patches_of(cfg, image_shape) * w + (w if cfg.pool == "cls" else 0)
        block = block_params(w, m)
        if cfg.attention == "factorised":
            block += 2 * w + 4 * w * w + 3 * w  # the depth attention and its LayerNorm
        head = w + block_params(w, m) - 2 * w if cfg.pool == "map" else 0  # probe, attention, norm, MLP
        return patch_embed + position + cfg.depth * block + 2 * w + head

    @staticmethod
    def adapt_pretrained(tower: Mapping[str, Any], cfg: ViT3DConfig, image_shape: tuple[int, ...]) -> dict[str, Any]:
        """A pretrained tower's parameters ({name: array}, nested) with its position embedding
        resized to this config's token grid, so a tower trained at one volume size loads at
        another (the rest must match as it is)."""
        adapted = dict(tower)
        if "pos_emb" in adapted:
            adapted["pos_emb"] = np.asarray(resize_pos_emb(jnp.asarray(adapted["pos_emb"]),
                                                           token_grid(cfg, image_shape)))
        return adapted

    def block_place(self, layer: int) -> tuple[int, tuple[Any, ...]]:
        """Where block `layer` (0 .. depth - 1) lives in the encoder: (the index of its scanned
        unit, its path inside that unit): a local_global group holds its slab blocks under
        ("local", i) and its last block under ("global_block",)."""
        if self.attention != "local_global":
            return layer, ()
        group, position = divmod(layer, self.global_every)
        return group, (("local", position) if position < self.global_every - 1 else ("global_block",))

    # --- the forward pass -------------------------------------------------------------------

    def embed_patches(self, images: jax.Array) -> jax.Array:
        """(B, D, H, W, C) -> (B, N, width) tubelet tokens, depth-major, with their position
        embeddings (no cls)."""
        # The residual stream is float32; blocks cast to the compute dtype for their matmuls.
        x = self.patch_embed(patchify(images, self.patch_size)).astype(jnp.float32)
        return x + self.pos_emb[...].reshape(self.num_patches, self.width)

    def encode(self, patch_tokens: jax.Array, *, tube_masked: bool = False) -> jax.Array:
        """Embedded patch tokens -> normalised encoder states (B, N', width), the cls state first
        when pool="cls". "global" takes any subset (MAE); the other layouts take all tokens, or
        with `tube_masked` the same (h, w) positions at every depth, depth-major."""
        x = patch_tokens
        if self.attention != "global" and x.shape[1] != self.num_patches:
            if not tube_masked:
                raise ConfigError(f"attention={self.attention} needs every patch token or a tube-masked subset, "
                                  f"got {x.shape[1]} of {self.num_patches} tokens; use attention=global for MAE")
            if x.shape[1] % self.grid[0]:
                raise ValueError(f"{x.shape[1]} tube-masked tokens do not split into {self.grid[0]} slices")
        if self.pool == "cls":
            x = jnp.concatenate([jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, x.shape[-1])), x], axis=1)
        return self.norm(self.encoder(x))

    def pool_states(self, x: jax.Array) -> jax.Array:
        if self.pool == "cls":
            return x[:, 0]
        if self.pool == "mean":
            return x.mean(axis=1)
        return self.map_head(x)

    def tokens(self, images: jax.Array) -> jax.Array:
        """(B, D, H, W, C) -> (B, N', width) encoder states, what a decoder cross-attends to."""
        return self.encode(self.embed_patches(images))

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.pool_states(self.tokens(images))


# --- inflation of a 2D ViT ----------------------------------------------------------------------

Path = tuple[Any, ...]


def _arrays(state: nnx.State) -> dict[Path, np.ndarray]:
    return {tuple(path): np.array(value[...] if isinstance(value, nnx.Variable) else value)
            for path, value in nnx.to_flat_state(state)}


def _layers(flat: dict[Path, np.ndarray]) -> list[dict[Path, np.ndarray]]:
    """The encoder blocks' parameters one dict per layer ({path inside the block: array}),
    from scanned (stacked) or unrolled layers."""
    per_layer: dict[int, dict[Path, np.ndarray]] = {}
    for path, value in flat.items():
        if path[:2] != ("encoder", "layers"):
            continue
        rest = path[2:]
        if isinstance(rest[0], int):
            per_layer.setdefault(rest[0], {})[rest[1:]] = value
        else:
            for index, layer_value in enumerate(value):
                per_layer.setdefault(index, {})[rest] = layer_value
    return [per_layer[index] for index in sorted(per_layer)]


def inflate_from_vit2d(vit2d: ViT | nnx.State, vit3d: ViT3D, mode: Literal["average", "centre"] = "average",
                       *, grid2d: tuple[int, int] | None = None) -> None:
    """Start `vit3d` from a trained 2D ViT (or its nnx.State of Params), in place.

    Copied: every block (layer i of the 2D model into layer i of the 3D one, scanned or not),
    the final norm, the MAP head. The patch embedding kernel is inflated along depth: "average"
    puts kernel / pd on each of the pd slices, "centre" all of it on slice pd // 2 (the 2D
    patch must be the tubelet's (ph, pw), with the same channels). The 2D position embedding
    (grid `grid2d`: by default the 3D (gh, gw), else square) is resized bilinearly to (gh, gw)
    if it differs and repeated along depth; the 2D cls token plus its position becomes the cls
    token. Factorised layers get the 2D attention in both their slice and depth attention, the
    depth attention's output projection set to zero, so it starts as the identity.

    Either mode makes a volume of identical slices give the 2D model's features of one slice
    when pool is "mean" or "map", for every layout: every depth token equals the 2D token, and
    attending over gd (or slab) copies of each key gives the same softmax average.
    """
    if mode not in ("average", "centre"):
        raise ValueError(f"unknown inflation mode {mode!r}; use 'average' or 'centre'")
    source = _arrays(nnx.state(vit2d, nnx.Param) if isinstance(vit2d, nnx.Module) else vit2d)
    layers = _layers(source)
    if len(layers) != vit3d.depth:
        raise ValueError(f"the 2D model has {len(layers)} blocks, the 3D tower {vit3d.depth}")
    target = _arrays(nnx.state(vit3d, nnx.Param))
    gd, gh, gw = vit3d.grid
    pd = vit3d.patch_size[0]

    kernel = source["patch_embed", "kernel"]
    slice_rows = vit3d.patch_dim // pd  # ph * pw * channels
    if kernel.shape[0] != slice_rows:
        raise ValueError(f"the 2D patch embedding reads {kernel.shape[0]} values per patch; the tubelet "
                         f"{vit3d.patch_size} needs {slice_rows} per slice (same (ph, pw) and channels)")
    if mode == "average":
        inflated = np.repeat(kernel[None] / pd, pd, axis=0)
    else:
        inflated = np.zeros((pd, *kernel.shape), kernel.dtype)
        inflated[pd // 2] = kernel
    # Tubelets flatten as (pd, ph, pw, C): the depth index is the slowest, so slices stack.
    _assign(target, ("patch_embed", "kernel"), inflated.reshape(vit3d.patch_dim, -1))
    _assign(target, ("patch_embed", "bias"), source["patch_embed", "bias"])

    has_cls = ("cls_token",) in source
    pos = source["pos_emb",]
    patches = pos[int(has_cls):]
    if grid2d is None:
        side = math.isqrt(len(patches))
        grid2d = (gh, gw) if gh * gw == len(patches) else (side, side)
    if math.prod(grid2d) != len(patches):
        raise ValueError(f"the 2D position embedding has {len(patches)} patches, not a {grid2d} grid; pass grid2d")
    plane = jax.image.resize(jnp.asarray(patches.reshape(*grid2d, -1)), (gh, gw, patches.shape[-1]),
                             method="bilinear", antialias=False)
    _assign(target, ("pos_emb",), np.broadcast_to(np.asarray(plane)[None], (gd, gh, gw, patches.shape[-1])))
    if has_cls and ("cls_token",) in target:
        _assign(target, ("cls_token",), source["cls_token",] + pos[0])

    for path, value in source.items():
        if path[0] in ("norm", "map_head"):
            _assign(target, path, value)

    scanned = vit3d.encoder.scan_layers
    for index, layer in enumerate(layers):
        unit, place = vit3d.block_place(index)
        for sub, value in layer.items():
            copies = [(sub, value)]
            if vit3d.attention == "factorised" and sub[0] in ("norm1", "attn"):
                depth_sub = ({"norm1": "temporal_norm", "attn": "temporal_attn"}[sub[0]], *sub[1:])
                copies.append((depth_sub, np.zeros_like(value) if sub[:2] == ("attn", "out") else value))
            for dest_sub, dest_value in copies:
                path = ("encoder", "layers", *place, *dest_sub) if scanned else (
                    "encoder", "layers", unit, *place, *dest_sub)
                _assign(target, path, dest_value, index=unit if scanned else None)
    nnx.update(vit3d, nnx.from_flat_state({path: jnp.asarray(value) for path, value in target.items()}))


def _assign(target: dict[Path, np.ndarray], path: Path, value: np.ndarray, index: int | None = None) -> None:
    """target[path] (its `index`-th layer when stacked) = value, with the shapes checked."""
    if path not in target:
        raise ValueError(f"the 3D tower has no parameter {'/'.join(map(str, path))}")
    slot = target[path] if index is None else target[path][index]
    if slot.shape != np.shape(value):
        raise ValueError(f"{'/'.join(map(str, path))}: the 2D model's is {np.shape(value)}, the 3D tower's "
                         f"{slot.shape}")
    if index is None:
        target[path] = np.array(value, dtype=slot.dtype)
    else:
        target[path][index] = value
