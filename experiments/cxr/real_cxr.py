"""Shared settings of the real chest X-ray image-report experiments (mimic_clip.py,
chexpert_plus_clip.py): the synthetic_cxr contrastive recipe scaled to 224 px radiographs and
real report text. The data set is read from the user's copy: pass
`--set data.manual_dir=/path/to/your/copy` (needed only for the first build; the prepare step
stops with the expected layout when it is missing)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from radfm_jax.config import presets
from radfm_jax.config.schema import ExperimentConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "synthetic_cxr"))
from common import contrastive_config  # noqa: E402  (experiments/synthetic_cxr/common.py)


def real_cxr_clip(dataset: str, arg: str) -> ExperimentConfig:
    """CLIP on a real report data set: the default (ViT-S/16 at 224 px) or `smoke` (tiny)."""
    base = contrastive_config("clip", "" if arg == "" else "smoke", init_temperature=1 / 0.07)
    config = dataclasses.replace(
        base,
        name=f"{dataset}_clip" + ("_smoke" if arg else ""),
        data=dataclasses.replace(
            base.data, name=dataset, text_target="both", uncertain_policy="ignore",
            report_sentence_sampling=0.0),
    )
    if arg == "":
        return dataclasses.replace(
            config,
            total_steps=20_000, batch_size=256, eval_every=2_000, checkpoint_every=2_000,
            data=dataclasses.replace(config.data, image_size=224, input_size=224, max_text_len=128,
                                     vocab_size=8192, augment=True),
            model=dataclasses.replace(
                config.model, image=presets.vit("S", patch_size=16, pool="map"),
                text=presets.text("S", depth=6), embed_dim=512, scan_layers=True,
                compute_dtype="bfloat16"),
            optim=dataclasses.replace(config.optim, learning_rate=5e-4, warmup_steps=1_000),
        )
    if arg == "smoke":
        return config
    raise ValueError(f"unknown variant {arg!r}; use '' (the default) or 'smoke'")
