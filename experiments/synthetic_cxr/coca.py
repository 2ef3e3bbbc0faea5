"""CoCa: contrastive (CLIP) and captioning losses in one model; evaluated by zero-shot
classification, retrieval and report generation. It keeps the CLIP demo's image tower, batch,
schedule and sentence sampling, so its zero-shot results compare with clip.py's.

    radfm train --config experiments/synthetic_cxr/coca.py --workdir runs/coca
    radfm train --config experiments/synthetic_cxr/coca.py:smoke --workdir /tmp/coca_smoke
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig, GenerateConfig
from radfm_jax.models.decoder import TextDecoderConfig
from radfm_jax.objectives.coca import CocaConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_cxr_cpu(), {
        "name": "synthetic_cxr_coca",
        "objective": CocaConfig(),
        "model.image": presets.vit("Ti", patch_size=8, width=128, depth=1, heads=4, pool="map"),
        # One unimodal block gives the report embedding, one multimodal block the captions.
        "model.decoder": TextDecoderConfig(width=128, depth=2, heads=4, unimodal_depth=1),
        "model.embed_dim": 128,
        "model.scan_layers": False,
        "model.init_temperature": 10.0,
        "data.report_sentence_sampling": 0.5,
        "eval.generate": GenerateConfig(method="beam", beam_size=4),
    })
    if arg == "":
        return config
    if arg == "smoke":
        return presets.smoke(config)
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run) or 'smoke'")
