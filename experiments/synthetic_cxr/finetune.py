"""Fine-tuning the CLIP demo's image tower (experiments/synthetic_cxr/clip.py) to classify the
seven synthetic_cxr findings: `:linear`, `:lora`, `:partial` or `:full` (default), each with a
`-smoke` twin (`:lora-smoke`; `:smoke` is `:full-smoke`) for tests.

    radfm train --config experiments/synthetic_cxr/clip.py --workdir runs/clip
    radfm finetune --from runs/clip --config experiments/synthetic_cxr/finetune.py:lora --workdir runs/lora
    radfm finetune --from runs/clip --config experiments/synthetic_cxr/finetune.py:lora \
        --workdir runs/lora_10pc --set data.train_fraction=0.1      # 10 % of the training patients
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.classify import ClassifyConfig

MODES = ("linear", "lora", "partial", "full")


def get_config(arg: str = "") -> ExperimentConfig:
    mode, _, variant = {"": "full", "smoke": "full-smoke"}.get(arg, arg).partition("-")
    if mode not in MODES or variant not in ("", "smoke"):
        raise ValueError(f"unknown variant {arg!r}; use one of {', '.join(MODES)}, optionally with -smoke")
    config = with_fields(presets.synthetic_cxr_cpu(), {
        "name": f"synthetic_cxr_finetune_{mode}",
        "objective": ClassifyConfig(mode=mode, lora_rank=8, lora_alpha=16.0, partial_blocks=1,
                                    layer_decay=0.75 if mode in ("partial", "full") else 1.0),
        # The tower the CLIP demo trains (names and shapes must match its checkpoint).
        "model.image": presets.vit("Ti", patch_size=8, width=128, depth=1, heads=4, pool="map"),
        "model.scan_layers": False,
        # A head over frozen features learns fast at a high rate; tower weights want a small one.
        # Rates picked by validation AUROC at 10 % of the labels (lora 2e-3 / 5e-3 / 1e-2, full
        # 5e-4 / 1e-3), never by test numbers.
        "optim.learning_rate": 1e-2 if mode == "linear" else 5e-3 if mode == "lora" else 1e-3,
        "optim.warmup_steps": 20,
        "optim.weight_decay": 0.0 if mode == "linear" else 0.05,
        "total_steps": 200,
        "log_every": 25,
        "eval_every": 200,
        "checkpoint_every": 200,
        "data.augment": True,
    })
    if variant == "smoke":  # the tower of clip.py:smoke
        return presets.smoke(with_fields(config, {"model.image.pool": "mean"}))
    return config
