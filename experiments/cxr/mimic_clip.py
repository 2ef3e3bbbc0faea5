"""CLIP-style image-report pretraining on MIMIC-CXR-JPG with MIMIC-CXR reports.

    radfm train --config experiments/cxr/mimic_clip.py --workdir runs/mimic_clip \
        --set data.manual_dir=/data/mimic-cxr-jpg/2.1.0
    radfm data check mimic_cxr --set data.manual_dir=/data/mimic-cxr-jpg/2.1.0 --set data.image_size=224
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.clip import ClipConfig


def get_config(arg: str = "") -> ExperimentConfig:
    # The real-CXR recipe (ViT-S/16 at 224 px, 20,000 steps of 256); see presets.real_cxr.
    config = with_fields(presets.real_cxr("mimic_cxr"), {"objective": ClipConfig()})
    if arg == "":
        return config
    if arg == "smoke":  # tiny, float32, for tests on a fake copy of the data set's layout
        return presets.smoke(with_fields(config, {
            "model.image.pool": "mean",
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
            "model.compute_dtype": "float32",
        }))
    raise ValueError(f"unknown variant {arg!r}; use '' (the default) or 'smoke'")
