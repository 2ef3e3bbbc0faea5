"""SigLIP-style (pairwise sigmoid) volume-report pretraining on synthetic_ct: the 3D CLIP
demo's towers, data and schedule with the sigmoid loss.

    radfm train --config experiments/synthetic_ct/siglip.py --workdir runs/ct_siglip
    radfm train --config experiments/synthetic_ct/siglip.py:smoke --workdir /tmp/ct_siglip_smoke
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.siglip import SiglipConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_ct_cpu(), {
        "name": "synthetic_ct_siglip",
        "objective": SiglipConfig(),
        "model.image": presets.vit3d("Ti", tubelet=(8, 8, 8), width=128, depth=1, heads=4, pool="map"),
        "model.text": presets.text("Ti", width=128, depth=1, heads=4, pool="mean"),
        "model.embed_dim": 128,
        "model.scan_layers": False,
        # SigLIP's initialisation: logit scale 10, bias -10.
        "model.init_temperature": 10.0,
        "model.init_bias": -10.0,
        "data.report_sentence_sampling": 0.5,
    })
    if arg == "":
        return config
    if arg == "smoke":
        return presets.smoke_3d(with_fields(config, {
            "model.image.pool": "mean",
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
        }))
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run) or 'smoke'")
