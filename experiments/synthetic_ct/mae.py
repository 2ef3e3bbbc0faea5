"""Masked volume modelling (3D MAE) on synthetic_ct: tube masking hides the same (h, w)
positions at every depth, so a hidden finding cannot be copied from the next slab; evaluated
by a linear probe on frozen encoder features.

    radfm train --config experiments/synthetic_ct/mae.py --workdir runs/ct_mae
    radfm train --config experiments/synthetic_ct/mae.py:smoke --workdir /tmp/ct_mae_smoke
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.models.pixel_decoder import PixelDecoderConfig
from radfm_jax.objectives.mae import MaeConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_ct_cpu(), {
        "name": "synthetic_ct_mae",
        "objective": MaeConfig(mask_ratio=0.75),
        "model.image": presets.vit3d("Ti", tubelet=(8, 8, 8), width=128, depth=2, heads=4, pool="mean"),
        "model.mae_decoder": PixelDecoderConfig(width=96, depth=1, heads=4),
        "model.scan_layers": False,
    })
    if arg == "":
        return config
    if arg == "smoke":
        return presets.smoke_3d(config)
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run) or 'smoke'")
