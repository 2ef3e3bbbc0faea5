"""CLIP-style (softmax InfoNCE) volume-report pretraining on synthetic_ct: the 3D demo.

    radfm train --config experiments/synthetic_ct/clip.py --workdir runs/ct_clip
    radfm train --config experiments/synthetic_ct/clip.py:smoke --workdir /tmp/ct_clip_smoke
"""

from pathlib import Path

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.clip import ClipConfig

_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_ct_cpu(), {
        "name": "synthetic_ct_clip",
        "objective": ClipConfig(),
        # 8 x 8 x 8 tubelets on 32 x 64 x 64 volumes: 256 tokens, global attention in 1 layer,
        # attention pooling (the findings are small and local); a 2-layer text tower (CT
        # reports deny more findings than radiograph reports: one layer scored "no X." as X).
        # At the 2D demo's learning rate (2e-3, 100 warmup steps) the embeddings collapsed (loss
        # stuck at ln(batch), gradients ~0, by step 100) in one of two runs, and with a second
        # image layer too: 1e-3 with 200 warmup steps trains.
        "model.image": presets.vit3d("Ti", tubelet=(8, 8, 8), width=128, depth=1, heads=4, pool="map"),
        "model.text": presets.text("Ti", width=128, depth=2, heads=4, pool="mean"),
        "model.embed_dim": 128,
        "model.scan_layers": False,
        "model.init_temperature": 10.0,
        "data.report_sentence_sampling": 0.5,
        "optim.learning_rate": 1e-3,
        "optim.warmup_steps": 200,
        "total_steps": 2400,  # with the data build and evaluations, inside the 20-minute budget
        "eval_every": 1200,
        "checkpoint_every": 1200,
        # Zero-shot under chest CT wording the report generator never writes (held out).
        "eval.prompt_sets": (str(_PROMPTS / "heldout_ct.json"),),
    })
    if arg == "":
        return config
    if arg == "smoke":
        return presets.smoke_3d(with_fields(config, {
            "model.image.pool": "mean",
            "eval.prompt_sets": (),
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
        }))
    raise ValueError(f"unknown variant {arg!r}; use '' (the demo) or 'smoke'")
