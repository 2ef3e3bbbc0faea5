"""MAE's pixel decoder: the visible patches' encoder states plus mask tokens, back in patch
order, through bidirectional blocks to every patch's pixels (He et al. 2022)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import positive
from radfm_jax.config.schema import MaeDecoderConfig
from radfm_jax.models.costs import BlockStack, TowerCosts, block_params
from radfm_jax.models.layers import Dtype, Transformer, check_heads, dense, layer_norm, param


@dataclasses.dataclass(frozen=True)
class PixelDecoderConfig(MaeDecoderConfig):
    """MAE's pixel decoder: bidirectional pre-norm blocks over every patch position."""

    name: Literal["transformer"] = dataclasses.field(default="transformer", init=False)
    width: int = positive(128)
    depth: int = positive(2)
    heads: int = positive(4)
    mlp_ratio: float = positive(4.0)


class PixelDecoder(nnx.Module):
    """Encoded visible tokens + mask tokens, back in patch order, with position embeddings ->
    blocks -> norm -> each patch's pixels."""

    Config = PixelDecoderConfig

    def __init__(self, cfg: PixelDecoderConfig, num_patches: int, encoder_width: int, patch_pixels: int, *,
                 dtype: Dtype, scan_layers: bool, remat: bool | str, rngs: nnx.Rngs):
        self.check(cfg)
        width = cfg.width
        self.num_patches = num_patches
        self.embed = dense(encoder_width, width, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.mask_token = param(nnx.initializers.normal(0.02), (width,), ("embed",), rngs)
        self.pos_emb = param(nnx.initializers.normal(0.02), (num_patches, width), ("seq", "embed"), rngs)
        self.blocks = Transformer(width, cfg.depth, cfg.heads, int(width * cfg.mlp_ratio),
                                  dtype=dtype, scan_layers=scan_layers, remat=remat, rngs=rngs)
        self.norm = layer_norm(width, rngs)
        self.predict = dense(width, patch_pixels, ("embed", "patch"), dtype=dtype, rngs=rngs)

    @staticmethod
    def check(cfg: PixelDecoderConfig, key: str = "model.mae_decoder") -> None:
        check_heads(cfg.width, cfg.heads, key)

    @staticmethod
    def costs(cfg: PixelDecoderConfig, num_patches: int, visible: int, encoder_width: int,
              patch_pixels: int) -> TowerCosts:
        """Per example forward: the embedding of the visible tokens, the blocks over every
        patch position, the pixel prediction."""
        stack = BlockStack(num_patches, cfg.width, int(cfg.width * cfg.mlp_ratio), cfg.heads, cfg.depth)
        return TowerCosts(width=cfg.width, input_flops=0.0, stacks=(stack,),
                          head_flops=float(2 * visible * encoder_width * cfg.width
                                           + 2 * num_patches * cfg.width * patch_pixels))

    @staticmethod
    def param_count(cfg: PixelDecoderConfig, num_patches: int, encoder_width: int, patch_pixels: int) -> int:
        w = cfg.width
        return ((encoder_width + 1) * w + w + num_patches * w + cfg.depth * block_params(w, int(w * cfg.mlp_ratio))
                + 2 * w + (w + 1) * patch_pixels)

    def __call__(self, encoded: jax.Array, restore: jax.Array) -> jax.Array:
        """encoded (B, keep, encoder width) visible tokens in shuffled order, `restore` (B, N)
        the permutation back to patch order -> (B, N, patch pixels) float32."""
        x = self.embed(encoded).astype(jnp.float32)
        keep = x.shape[1]
        hidden = jnp.broadcast_to(self.mask_token[...], (x.shape[0], self.num_patches - keep, x.shape[-1]))
        x = jnp.take_along_axis(jnp.concatenate([x, hidden], axis=1), restore[:, :, None], axis=1)
        x = self.norm(self.blocks(x + self.pos_emb[...]))
        return self.predict(x).astype(jnp.float32)
