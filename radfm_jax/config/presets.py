"""Shared starting points of experiment files: named model sizes (ViT Ti / S / B / L;
Dosovitskiy et al., Touvron et al. for Ti and S), the ladder of sizes scaling sweeps step
through, and the bases experiment files state their differences from (`synthetic_cxr_cpu`,
`real_cxr`, and the `smoke` variant of any experiment)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import DataConfig, EvalConfig, ExperimentConfig, MeshConfig, OptimConfig
from radfm_jax.models.text import TextTransformerConfig
from radfm_jax.models.vit import ViTConfig
from radfm_jax.models.vit3d import ViT3DConfig

# size -> (width, depth, heads); every size uses mlp_ratio 4.
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
}


def _size(size: str) -> tuple[int, int, int]:
    if size not in VIT_SIZES:
        raise ValueError(f"unknown model size {size!r}; valid sizes: {', '.join(VIT_SIZES)}")
    return VIT_SIZES[size]


def vit(size: str, patch_size: int = 16, **overrides) -> ViTConfig:
    """The ViT-<size>/<patch_size> image tower, e.g. vit("B", 16) is ViT-B/16."""
    width, depth, heads = _size(size)
    cfg = ViTConfig(
        patch_size=patch_size, width=width, depth=depth, heads=heads, mlp_ratio=4.0
    )
    return dataclasses.replace(cfg, **overrides)


def vit3d(size: str, tubelet: tuple[int, int, int] = (10, 20, 20), **overrides) -> ViT3DConfig:
    """The 3D ViT-<size> image tower over (depth, height, width) tubelets; the default tubelet
    is CT-CLIP's (CT-ViT: 10 slices x 20 x 20 pixels)."""
    width, depth, heads = _size(size)
    cfg = ViT3DConfig(tubelet=tubelet, width=width, depth=depth, heads=heads, mlp_ratio=4.0)
    return dataclasses.replace(cfg, **overrides)


def text(size: str, depth: int = 12, **overrides) -> TextTransformerConfig:
    """A text tower with the width and heads of ViT-<size> (CLIP-style: depth 12 by default)."""
    width, _, heads = _size(size)
    cfg = TextTransformerConfig(width=width, depth=depth, heads=heads, mlp_ratio=4.0)
    return dataclasses.replace(cfg, **overrides)


class LadderSize(NamedTuple):
    name: str
    width: int
    depth: int
    heads: int


# Scaling sweeps: from a size that trains in minutes on a CPU to ViT-L, each step ~3-8x the
# parameters of the one before. M is the 512-wide ViT of Zhai et al. (2022), "Scaling ViTs".
_LADDER = (
    LadderSize("XXS", 64, 2, 2),
    LadderSize("XS", 128, 4, 4),
    LadderSize("Ti", *VIT_SIZES["Ti"]),
    LadderSize("S", *VIT_SIZES["S"]),
    LadderSize("M", 512, 12, 8),
    LadderSize("B", *VIT_SIZES["B"]),
    LadderSize("L", *VIT_SIZES["L"]),
)


def ladder() -> list[LadderSize]:
    """The model sizes of scaling sweeps, smallest first: (width, depth, heads) given to both the
    image and the text tower (mlp_ratio and patch size stay the base config's)."""
    return list(_LADDER)


def synthetic_cxr_cpu() -> ExperimentConfig:
    """Data, optimizer, schedule, mesh and evaluation of the synthetic_cxr experiments, sized for
    a 2-core CPU (data + 2,000 steps + evaluation within 15 minutes for the contrastive demo).
    The experiment file names its objective and towers."""
    return ExperimentConfig(
        seed=0,
        total_steps=2000,
        batch_size=128,
        log_every=50,
        eval_every=1000,
        checkpoint_every=1000,
        data=DataConfig(name="synthetic_cxr", image_size=64, input_size=64, max_text_len=64, augment=False),
        optim=OptimConfig(learning_rate=2e-3, warmup_steps=100, weight_decay=0.05),
        mesh=MeshConfig(data=-1, fsdp=1, tensor=1, rules="fsdp"),
        eval=EvalConfig(batch_size=256),
    )


def smoke(config: ExperimentConfig) -> ExperimentConfig:
    """The `smoke` variant of an experiment: tiny, seconds per step, for tests and a first
    look. Same objective, towers' kinds and pooling; scanned layers so the tests exercise scan."""
    model = config.model
    return with_fields(config, {
        "name": config.name + "_smoke",
        "total_steps": 20, "batch_size": 16, "log_every": 5, "eval_every": 10, "checkpoint_every": 10,
        "data.num_train": 400, "data.num_val": 40, "data.num_test": 80, "data.image_size": 32,
        "data.input_size": 32, "data.max_text_len": 32, "data.vocab_size": 256,
        "model.image": vit("Ti", patch_size=8, width=32, depth=2, heads=2, pool=model.image.pool),
        "model.decoder.width": 32, "model.decoder.heads": 2,
        "model.mae_decoder": dataclasses.replace(model.mae_decoder, width=32, depth=1, heads=2),
        "model.embed_dim": 16, "model.scan_layers": True,
        "eval.batch_size": 32, "eval.probe_train_examples": 200, "eval.generate.max_examples": 32,
    })


def synthetic_ct_cpu() -> ExperimentConfig:
    """Data, optimizer, schedule and evaluation of the synthetic_ct experiments, sized for a
    2-core CPU: 32 x 64 x 64 volumes (lung and mediastinum windows as channels), 1,500 training
    studies. The experiment file names its objective and towers (model.image: a vit3d)."""
    return with_fields(synthetic_cxr_cpu(), {
        "batch_size": 32,
        "data": DataConfig(name="synthetic_ct", image_size=64, input_size=64, max_text_len=96, augment=False,
                           num_train=1500, num_val=150, num_test=300),
        "eval.batch_size": 32,
    })


def smoke_3d(config: ExperimentConfig) -> ExperimentConfig:
    """The `smoke` variant of a 3D experiment: smoke()'s schedule and sizes, on 16 x 32 x 32
    volumes through a 2-block vit3d of the experiment's attention layout (local_global: one
    slab layer of 2 depth tokens, then one global layer)."""
    image = config.model.image
    return with_fields(smoke(config), {
        "data.num_train": 120, "data.num_val": 24, "data.num_test": 40, "data.max_text_len": 48,
        "model.image": vit3d("Ti", tubelet=(4, 8, 8), width=32, depth=2, heads=2, pool=image.pool,
                             attention=getattr(image, "attention", "global"), slab=2, global_every=2),
        "eval.batch_size": 8,
    })


# Data sets trained with the synthetic recipes' own preprocessing; every other 2D set has a
# real_cxr recipe (224 px).
_OWN_PREPROCESSING = {"synthetic_cxr": synthetic_cxr_cpu, "synthetic_ct": synthetic_ct_cpu, "ct_rate": synthetic_ct_cpu}


def recipe_data(dataset: str) -> DataConfig:
    """The preprocessing data set `dataset`'s recipe trains with, so `radfm data check` builds
    and checks what training will read: real_cxr's (224 px) for real chest X-ray sets, the
    synthetic recipes' otherwise."""
    base = _OWN_PREPROCESSING[dataset]() if dataset in _OWN_PREPROCESSING else real_cxr(dataset)
    return dataclasses.replace(base.data, name=dataset)


def real_cxr(dataset: str) -> ExperimentConfig:
    """CLIP on a real chest X-ray report data set read from the user's copy
    (`--set data.manual_dir=...` for the first build): ViT-S/16 at 224 px, a 6-layer text tower
    of the same width, bfloat16 compute, 20,000 steps of 256."""
    return with_fields(synthetic_cxr_cpu(), {
        "name": f"{dataset}_clip",
        "total_steps": 20_000, "batch_size": 256, "eval_every": 2_000, "checkpoint_every": 2_000,
        "data.name": dataset, "data.text_target": "both", "data.uncertain_policy": "ignore",
        "data.image_size": 224, "data.input_size": 224, "data.max_text_len": 128, "data.vocab_size": 8192,
        "data.augment": True,
        "model.image": vit("S", patch_size=16, pool="map"),
        "model.text": text("S", depth=6),
        "model.embed_dim": 512, "model.scan_layers": True, "model.compute_dtype": "bfloat16",
        "model.init_temperature": 1 / 0.07,
        "optim.learning_rate": 5e-4, "optim.warmup_steps": 1_000,
    })
