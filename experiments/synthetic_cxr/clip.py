"""CLIP-style (softmax, symmetric InfoNCE) image-report pretraining on synthetic_cxr: the
README's demo.

    radfm train --config experiments/synthetic_cxr/clip.py --workdir runs/clip
    radfm train --config experiments/synthetic_cxr/clip.py:smoke --workdir /tmp/smoke
"""

from pathlib import Path

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.clip import ClipConfig


_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_cxr_cpu(), {
        "name": "synthetic_cxr_clip",
        "objective": ClipConfig(),
        # ViT patch 8 on 64 px images (64 tokens: small nodules and thin lines need the
        # resolution) in 1 layer before attention pooling ("map" beats mean pooling on the small,
        # local findings), and a 1-layer text tower (report language is formulaic): a step near
        # 0.3 s on 2 CPU cores. Unrolled layers are ~20% faster than scan on a CPU at this depth
        # (benchmarks/train_step.py); on accelerators use larger towers and scan.
        "model.image": presets.vit("Ti", patch_size=8, width=128, depth=1, heads=4, pool="map"),
        "model.text": presets.text("Ti", width=128, depth=1, heads=4, pool="mean"),
        "model.embed_dim": 128,
        "model.scan_layers": False,
        "model.init_temperature": 10.0,
        # Half the training reports become a random subset of their sentences, so one-sentence
        # zero-shot prompts look like texts the text tower has seen.
        "data.report_sentence_sampling": 0.5,
        "data.max_text_len": 80,  # the varied reports run longer: 96 % fit in 80 tokens
        # Zero-shot under wordings the report generator never writes (README, prompt robustness).
        "eval.prompt_sets": tuple(str(_PROMPTS / name) for name in ("heldout_cxr.json", "independent_cxr.json")),
    })
    if arg == "":
        return config
    if arg == "smoke":  # with augmentation, mean pooling and a 2-layer text tower
        return presets.smoke(with_fields(config, {
            "data.augment": True,
            "model.image.pool": "mean",
            "model.text": presets.text("Ti", width=32, depth=2, heads=2),
            "eval.prompt_sets": (),
        }))
    raise ValueError(f"unknown variant {arg!r}; use '' (the demo) or 'smoke'")
