"""Shared settings of the synthetic_cxr contrastive experiments (imported by clip.py and
siglip.py, which differ only in the objective and its temperature / bias)."""

from __future__ import annotations

import dataclasses

from radfm_jax.config import presets
from radfm_jax.config.schema import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    MeshConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
)


def contrastive_config(objective: str, arg: str, **model_overrides) -> ExperimentConfig:
    """The demo (default) or `smoke` variant of a contrastive experiment on synthetic_cxr."""
    # The demo is sized for a 2-core CPU: data + training + evaluation within 15 minutes.
    # ViT patch 8 on 64 px images (64 tokens: small nodules and thin lines need the
    # resolution) in 1 layer before attention pooling, and a 1-layer text tower (report
    # language is formulaic) keep a step near 0.3 s there (0.35 s beside the input pipeline).
    # Unrolled layers (scan_layers=False) are ~20% faster than scan on CPU at this depth
    # (benchmarks/train_step.py). Attention pooling ("map") beats mean pooling on the small,
    # local findings; sentence sampling makes one-sentence zero-shot prompts look like texts
    # the text tower has seen. On accelerators use larger towers and scan.
    config = ExperimentConfig(
        name=f"synthetic_cxr_{objective}",
        seed=0,
        total_steps=2000,
        batch_size=128,
        log_every=50,
        eval_every=1000,
        checkpoint_every=1000,
        data=DataConfig(
            name="synthetic_cxr", image_size=64, input_size=64, max_text_len=64,
            augment=False, report_sentence_sampling=0.5,
        ),
        model=ModelConfig(
            image=presets.vit("Ti", patch_size=8, width=128, depth=1, heads=4, pool="map"),
            text=presets.text("Ti", width=128, depth=1, heads=4, pool="mean"),
            embed_dim=128,
            scan_layers=False,
            **model_overrides,
        ),
        objective=ObjectiveConfig(name=objective),
        optim=OptimConfig(learning_rate=2e-3, warmup_steps=100, weight_decay=0.05),
        mesh=MeshConfig(data=-1, fsdp=1, tensor=1, rules="fsdp"),
        eval=EvalConfig(batch_size=256),
    )
    if arg == "":
        return config
    if arg == "smoke":
        # Tiny and seconds per step: for tests and a first look, not for results. It keeps
        # augmentation and scan over layers on so the tests exercise those paths.
        return dataclasses.replace(
            config,
            name=config.name + "_smoke",
            total_steps=20,
            batch_size=16,
            log_every=5,
            eval_every=10,
            checkpoint_every=10,
            data=dataclasses.replace(
                config.data, num_train=400, num_val=40, num_test=80, image_size=32, input_size=32,
                max_text_len=32, vocab_size=256, augment=True,
            ),
            model=dataclasses.replace(
                config.model,
                image=presets.vit("Ti", patch_size=8, width=32, depth=2, heads=2, pool="mean"),
                text=presets.text("Ti", width=32, depth=2, heads=2),
                embed_dim=16,
                scan_layers=True,
            ),
            eval=dataclasses.replace(config.eval, batch_size=32),
        )
    raise ValueError(f"unknown variant {arg!r}; use '' (the demo) or 'smoke'")
