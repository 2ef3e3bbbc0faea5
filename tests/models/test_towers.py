"""Every registered tower declares its parameter count: it equals the built module's."""

import jax
import pytest
from flax import nnx

from radfm_jax.config import presets
from radfm_jax.models import towers
from radfm_jax.models.bert import BertConfig
from radfm_jax.models.decoder import TextDecoderConfig
from radfm_jax.models.pixel_decoder import PixelDecoderConfig


def _count(factory) -> int:
    model = nnx.eval_shape(factory)
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("pool", ["cls", "mean", "map"])
@pytest.mark.parametrize("scan", [True, False])
def test_image_tower_param_count(pool, scan):
    # the options published checkpoints need (a pre-block norm, layer scale) add parameters
    variants = dict(norm_pre=True, layer_scale=1e-5) if scan else {}
    cfg = presets.vit("Ti", 8, width=48, depth=3, heads=4, pool=pool, **variants)
    tower = towers.IMAGE_TOWERS[cfg.name]
    built = _count(lambda: tower(cfg, (32, 24), channels=2, scan_layers=scan, rngs=nnx.Rngs(0)))
    assert tower.param_count(cfg, (32, 24), channels=2) == built


@pytest.mark.parametrize("cfg", [presets.text("Ti", width=48, depth=2, heads=4),
                                 BertConfig(width=48, depth=2, heads=4, type_vocab_size=3)], ids=["transformer", "bert"])
def test_text_tower_param_count(cfg):
    tower = towers.TEXT_TOWERS[cfg.name]
    assert tower.param_count(cfg, 100, 20) == _count(lambda: tower(cfg, 100, 20, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("unimodal", [0, 1, 3])
def test_report_decoder_param_count(unimodal):
    cfg = TextDecoderConfig(width=32, depth=3, heads=2, unimodal_depth=unimodal)
    tower = towers.REPORT_DECODERS[cfg.name]
    built = _count(lambda: tower(cfg, 90, 16, 48, dtype=jax.numpy.float32, scan_layers=True, remat="none",
                                 rngs=nnx.Rngs(0)))
    assert tower.param_count(cfg, 90, 16, 48) == built


def test_pixel_decoder_param_count():
    cfg = PixelDecoderConfig(width=32, depth=2, heads=2)
    tower = towers.PIXEL_DECODERS[cfg.name]
    built = _count(lambda: tower(cfg, 12, 48, 64, dtype=jax.numpy.float32, scan_layers=False, remat="none",
                                 rngs=nnx.Rngs(0)))
    assert tower.param_count(cfg, 12, 48, 64) == built
