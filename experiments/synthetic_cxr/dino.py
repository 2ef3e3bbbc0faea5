"""Self-distillation (DINOv2 / RAD-DINO's recipe: DINO + iBOT + KoLeo, EMA teacher, multi-crop) on
synthetic_cxr images; evaluated by a linear probe on the class token. The `rad-dino` variant
continues pretraining from RAD-DINO's published weights you hold (a Hugging Face Dinov2Model
folder): pass it with --weights, which sets the tower's architecture.

    radfm train --config experiments/synthetic_cxr/dino.py --workdir runs/dino
    radfm train --config experiments/synthetic_cxr/dino.py:smoke --workdir /tmp/dino_smoke
    radfm train --config experiments/synthetic_cxr/dino.py:rad-dino --weights ~/models/rad-dino \\
        --workdir runs/rad_dino_continued

The paper's recipe beside this one (DINOv2 ViT-L/14 at 224 px; RAD-DINO ViT-B/14 at 518 px):
65,536 prototypes, head 2048 -> 256, 2 global + 8 local views (98 px), teacher temperature
0.04 -> 0.07, student 0.1, momentum 0.994 -> 1, iBOT on 10-50 % of the patches of half the
images, KoLeo 0.1, AdamW with layer-wise decay. Sized here for a 2-core CPU: ViT-Ti-like,
64 px, 512 prototypes, 4 local views of 32 px, a fixed teacher temperature, random masking.
"""

from radfm_jax.config import presets
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.dino import DinoConfig


def get_config(arg: str = "") -> ExperimentConfig:
    config = with_fields(presets.synthetic_cxr_cpu(), {
        "name": "synthetic_cxr_dino",
        "objective": DinoConfig(prototypes=512, head_hidden=256, head_bottleneck=64, local_count=4, local_size=32,
                                teacher_momentum=0.99),
        "batch_size": 64,
        "optim.learning_rate": 5e-4,
        "model.image": presets.vit("Ti", patch_size=8, width=128, depth=2, heads=4, pool="cls"),
        "model.scan_layers": False,
        "data.augment": True,
    })
    if arg == "":
        return config
    if arg == "smoke":
        return with_fields(presets.smoke(config), {
            "objective.prototypes": 64, "objective.head_hidden": 32, "objective.head_bottleneck": 16,
            "objective.local_count": 2, "objective.local_size": 16,
        })
    if arg == "rad-dino":  # continued pretraining at RAD-DINO's geometry; --weights sets the tower
        return with_fields(config, {"name": "rad_dino_continued", "data.input_size": 518, "data.image_size": 518,
                                    "model.image": presets.vit("B", 14, pool="cls", act="gelu", layer_scale=1e-5),
                                    "objective.local_size": 224, "objective.local_count": 8,
                                    "objective.prototypes": 65536, "objective.head_hidden": 2048,
                                    "objective.head_bottleneck": 256, "batch_size": 32, "optim.learning_rate": 1e-5})
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run), 'smoke' or 'rad-dino'")
