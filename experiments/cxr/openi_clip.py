"""CLIP-style image-report pretraining on Open-i (IU X-ray) from your own copy.

    radfm train --config experiments/cxr/openi_clip.py --workdir runs/openi_clip \
        --set data.manual_dir=/path/to/openi        # holds ecgen-radiology/ and NLMCXR_png/
    radfm train --config experiments/cxr/openi_clip.py:smoke --workdir /tmp/openi_smoke \
        --set data.manual_dir=/path/to/openi

data.manual_dir is required for the first build (the prepared data set is then reused from
data.data_dir); without it the build stops with an error showing the expected layout. Labels
come from the rule-based report labeler.
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.clip import ClipConfig


def get_config(arg: str = "") -> ExperimentConfig:
    # The real-CXR recipe (ViT-S/16 at 224 px); see presets.real_cxr. Open-i is small (about
    # 7,400 images of 3,900 reports), so 2,000 steps (about 70 epochs) instead of 20,000.
    config = with_fields(presets.real_cxr("openi"), {
        "objective": ClipConfig(),
        "total_steps": 2_000,
        "eval_every": 500,
        "checkpoint_every": 500,
    })
    if arg == "":
        return config
    if arg == "smoke":  # tiny, float32, for tests on a fake copy of the data set's layout
        return presets.smoke(with_fields(config, {
            "model.image.pool": "mean",
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
            "model.compute_dtype": "float32",
        }))
    raise ValueError(f"unknown variant {arg!r}; use '' (the default) or 'smoke'")
