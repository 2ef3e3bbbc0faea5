"""Masked image modelling (MAE) on synthetic_cxr images; evaluated by a linear probe on frozen
encoder features.

    radfm train --config experiments/synthetic_cxr/mae.py --workdir runs/mae
    radfm train --config experiments/synthetic_cxr/mae.py:smoke --workdir /tmp/mae_smoke
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.models.pixel_decoder import PixelDecoderConfig
from radfm_jax.objectives.mae import MaeConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_cxr_cpu(), {
        "name": "synthetic_cxr_mae",
        "objective": MaeConfig(mask_ratio=0.75),
        # The encoder sees a quarter of the patches, so it affords 4 layers on a CPU; mean
        # pooling for the linear probe.
        "model.image": presets.vit("Ti", patch_size=8, width=128, depth=4, heads=4, pool="mean"),
        "model.mae_decoder": PixelDecoderConfig(width=96, depth=1, heads=4),
        "model.scan_layers": False,
    })
    if arg == "":
        return config
    if arg == "smoke":
        return presets.smoke(config)
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run) or 'smoke'")
