"""The towers models are built from, by name: one explicit mapping per slot of ModelConfig.

A tower is one module (models/<tower>.py) holding its typed config (a frozen dataclass with a
`name`, subclassing the slot's base in config/schema.py) and its Flax NNX class, which names
that config as `Config` and declares its costs:

- image towers (`model.image`): `Tower(cfg, image_shape, *, channels, dtype, scan_layers,
  remat, rngs)`; `embed_patches`, `encode`, `pool_states`, `tokens`, `__call__` -> (B, width);
  classmethods `check(cfg, image_shape)`, `num_tokens(cfg, image_shape)`,
  `costs(cfg, image_shape, channels, patches=None)`, `param_count(cfg, image_shape, channels)`,
  `mask_tube(cfg, image_shape)` (tokens MAE hides together, passed to `encode(tokens,
  tube_masked=True)` depth-major);
- text towers (`model.text`): `Tower(cfg, vocab_size, max_len, *, dtype, scan_layers, remat,
  rngs)`, `__call__` tokens -> (B, width); classmethods `check(cfg)`, `costs(cfg, length)`,
  `param_count(cfg, vocab_size, max_len)`;
- report decoders (`model.decoder`) and MAE pixel decoders (`model.mae_decoder`): see
  models/decoder.py and models/mae.py.

Adding a tower is its module plus one line here.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.schema import ModelConfig
from radfm_jax.models.bert import BertTextTower
from radfm_jax.models.decoder import TextDecoder
from radfm_jax.models.layers import LoraSpec
from radfm_jax.models.pixel_decoder import PixelDecoder
from radfm_jax.models.text import TextTransformer
from radfm_jax.models.vit import ViT
from radfm_jax.models.vit3d import ViT3D

IMAGE_TOWERS: dict[str, type] = {
    "vit": ViT,
    "vit3d": ViT3D,
}
TEXT_TOWERS: dict[str, type] = {
    "transformer": TextTransformer,
    "bert": BertTextTower,
}
REPORT_DECODERS: dict[str, type] = {
    "transformer": TextDecoder,
}
PIXEL_DECODERS: dict[str, type] = {
    "transformer": PixelDecoder,
}
# Each slot's mapping by the `kind` of its config base (config/schema.py).
TOWERS: dict[str, dict[str, type]] = {
    "image tower": IMAGE_TOWERS,
    "text tower": TEXT_TOWERS,
    "report decoder": REPORT_DECODERS,
    "pixel decoder": PIXEL_DECODERS,
}


def tower_options(cfg: ModelConfig) -> dict[str, Any]:
    """What every tower takes from the model config: compute dtype, scanned layers, remat."""
    return dict(dtype=jnp.dtype(cfg.compute_dtype), scan_layers=cfg.scan_layers, remat=cfg.remat)


def build_image_tower(cfg: ModelConfig, image_shape: tuple[int, ...], rngs: nnx.Rngs,
                      channels: int = 1, lora: LoraSpec | None = None) -> nnx.Module:
    """`lora`: low-rank adapters in the tower's blocks (fine-tuning; the tower must take them)."""
    adapters = {"lora": lora} if lora else {}
    return IMAGE_TOWERS[cfg.image.name](cfg.image, image_shape, channels=channels, **tower_options(cfg),
                                        rngs=rngs, **adapters)


def build_text_tower(cfg: ModelConfig, vocab_size: int, max_len: int, rngs: nnx.Rngs) -> nnx.Module:
    return TEXT_TOWERS[cfg.text.name](cfg.text, vocab_size, max_len, **tower_options(cfg), rngs=rngs)


def build_report_decoder(cfg: ModelConfig, vocab_size: int, max_len: int, context_width: int,
                         rngs: nnx.Rngs) -> nnx.Module:
    return REPORT_DECODERS[cfg.decoder.name](cfg.decoder, vocab_size, max_len, context_width,
                                             **tower_options(cfg), rngs=rngs)
