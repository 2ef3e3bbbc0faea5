"""Shared settings of the synthetic_cxr experiments: the contrastive ones (clip.py, siglip.py
differ only in the objective and its temperature / bias) and the generative ones (mae.py,
captioner.py, coca.py), all sized for a 2-core CPU with a `smoke` variant each."""

from __future__ import annotations

import dataclasses

from radfm_jax.config import presets
from radfm_jax.config.schema import (
    DataConfig,
    DecoderConfig,
    EvalConfig,
    GenerateConfig,
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
        # It keeps augmentation and scan over layers on so the tests exercise those paths.
        model = config.model
        config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, augment=True),
            model=dataclasses.replace(model, image=dataclasses.replace(model.image, pool="mean")))
        return _smoke(config, text=presets.text("Ti", width=32, depth=2, heads=2))
    raise ValueError(f"unknown variant {arg!r}; use '' (the demo) or 'smoke'")


def _smoke(config: ExperimentConfig, **model_overrides) -> ExperimentConfig:
    """Tiny and seconds per step, for tests and a first look."""
    return dataclasses.replace(
        config,
        name=config.name + "_smoke",
        total_steps=20, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10,
        data=dataclasses.replace(config.data, num_train=400, num_val=40, num_test=80, image_size=32,
                                 input_size=32, max_text_len=32, vocab_size=256),
        model=dataclasses.replace(
            config.model,
            image=presets.vit("Ti", patch_size=8, width=32, depth=2, heads=2, pool=config.model.image.pool),
            decoder=dataclasses.replace(config.model.decoder, width=32, heads=2),
            mae_decoder=DecoderConfig(width=32, depth=1, heads=2),
            embed_dim=16, scan_layers=True, **model_overrides,
        ),
        eval=dataclasses.replace(config.eval, batch_size=32, probe_train_examples=200,
                                 generate=dataclasses.replace(config.eval.generate, max_examples=32)),
    )


def generative_config(objective: str, arg: str) -> ExperimentConfig:
    """mae, caption or coca on synthetic_cxr: the CPU-sized run (arg "") or `smoke`. They share
    the contrastive demo's data, image tower and optimizer."""
    demo = contrastive_config("clip", "", init_temperature=10.0)
    # The captioner's decoder and vocabulary head make a step ~2x a contrastive one on a CPU, and
    # its loss is per example (no in-batch negatives), so it takes half the batch; naming small
    # nodules and thin pneumothoraces needs more image layers than the contrastive pooling does
    # (1 layer, 1,500 steps: clinical macro-F1 0.67). CoCa keeps the contrastive demo's batch,
    # schedule and sentence sampling so its zero-shot results compare. MAE's encoder sees a
    # quarter of the patches, so it affords 4 layers. Both pool by the mean for the linear probe.
    steps, batch = {"mae": (2000, 128), "caption": (3000, 64), "coca": (2000, 128)}[objective]
    image = demo.model.image
    if objective in ("mae", "caption"):
        image = dataclasses.replace(image, depth={"mae": 4, "caption": 3}[objective], pool="mean")
    config = dataclasses.replace(
        demo,
        name=f"synthetic_cxr_{objective}",
        total_steps=steps,
        batch_size=batch,
        eval_every=demo.eval_every,
        checkpoint_every=demo.checkpoint_every,
        data=dataclasses.replace(demo.data, report_sentence_sampling=0.5 if objective == "coca" else 0.0),
        model=dataclasses.replace(
            demo.model, image=image, mae_decoder=DecoderConfig(width=96, depth=1, heads=4),
            decoder=DecoderConfig(width=128, depth=2, heads=4, unimodal_depth=int(objective == "coca"))),
        objective=ObjectiveConfig(name=objective, mask_ratio=0.75),
        # Beam search (4) for reports: on the validation split it named more of the small
        # findings than greedy decoding (clinical macro-F1 0.705 vs 0.682 at step 3,000).
        eval=dataclasses.replace(demo.eval, generate=GenerateConfig(method="beam", beam_size=4)),
    )
    if arg == "":
        return config
    if arg == "smoke":
        return _smoke(config)
    raise ValueError(f"unknown variant {arg!r}; use '' (the CPU-sized run) or 'smoke'")
