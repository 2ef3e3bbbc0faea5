"""Typed, frozen experiment configuration. Data only: no logic lives here."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which prepared data set to read and how to turn records into model inputs."""

    name: Literal[
        "synthetic_cxr", "mimic_cxr", "chexpert", "chexpert_plus", "openi", "nih_cxr14", "ct_rate"
    ] = "synthetic_cxr"
    # Where prepared data sets live; "" means ~/.cache/radfm_jax/data (RADFM_DATA_DIR overrides).
    data_dir: str = ""
    # Real data sets: the user's own copy in its published layout (TFDS manual_dir).
    manual_dir: str = ""
    # Report text trained on: the FINDINGS section, the IMPRESSION section, or both.
    text_target: Literal["findings", "impression", "both"] = "both"
    # CheXpert-style uncertain labels: kept as uncertain (-1, ignored by evals), or mapped to
    # positive (U-ones) or negative (U-zeros) when the data set is built.
    uncertain_policy: Literal["ignore", "ones", "zeros"] = "ignore"
    # Preprocessing of real images: windows for CT ("lung", "mediastinum", ... or centre,width
    # pairs; empty = the header's VOI LUT) and how non-square images become square.
    windows: tuple[str, ...] = ()
    resize: Literal["pad", "crop"] = "pad"
    # Seed of the patient-level split for data sets without an official one.
    split_seed: int = 0
    # Builder settings (synthetic data sets only): size and rendering of the generated studies.
    num_train: int = 20_000
    num_val: int = 1_000
    num_test: int = 2_000
    image_size: int = 64
    build_seed: int = 0
    # Model-input settings.
    input_size: int = 64  # images are resized to input_size x input_size
    max_text_len: int = 64
    vocab_size: int = 1024
    augment: bool = True
    # Probability that a training report is replaced by a random subset of its sentences, so
    # the text tower also learns short, prompt-like texts (zero-shot prompts are one sentence).
    report_sentence_sampling: float = 0.0
    worker_count: int = 0  # Grain worker processes; 0 reads in the main process
    prefetch_batches: int = 2  # batches placed on devices ahead of the step


@dataclasses.dataclass(frozen=True)
class ImageTowerConfig:
    """A ViT. Use radfm_jax.config.presets.vit(...) for the named sizes Ti / S / B / L."""

    patch_size: int = 8
    width: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    pool: Literal["cls", "mean", "map"] = "mean"  # map = multihead attention pooling


@dataclasses.dataclass(frozen=True)
class TextTowerConfig:
    """A pre-norm causal-free transformer over report tokens; vocab comes from the tokenizer."""

    width: int = 192
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 4.0
    pool: Literal["eos", "mean"] = "eos"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    image: ImageTowerConfig = ImageTowerConfig()
    text: TextTowerConfig = TextTowerConfig()
    embed_dim: int = 128
    scan_layers: bool = True
    # What each transformer block keeps for the backward pass (models/layers.py REMAT_POLICIES):
    # none | full | dots | dots_no_batch | save_qkv_proj. Old configs' True/False = full/none.
    remat: Literal["none", "full", "dots", "dots_no_batch", "save_qkv_proj"] = "none"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    init_temperature: float = 10.0  # logit scale = init_temperature at start (CLIP: 1/0.07)
    init_bias: float = -10.0  # sigmoid-loss bias (SigLIP)


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    name: Literal["clip", "siglip"] = "clip"
    # SigLIP only: the paper's chunked form; text embeddings rotate around the batch devices
    # so no device holds more than a (B/devices)^2 block of logits. Same loss and gradients.
    chunked: bool = False


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.0  # cosine decays to learning_rate * min_lr_ratio
    weight_decay: float = 0.05
    b1: float = 0.9
    b2: float = 0.98
    grad_clip_norm: float = 1.0
    # Microbatches per step: the global batch is processed in this many slices inside one
    # jitted step. Exact for every objective: contrastive ones use GradCache (embed all, loss
    # on the full batch, re-run each slice's backward), per-example ones average gradients.
    grad_accum_steps: int = 1


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh axis sizes; -1 takes the remaining devices (at most one axis may)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    rules: Literal["dp", "fsdp", "fsdp_tp"] = "fsdp"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 256
    split: str = "test"
    max_examples: int = 0  # 0 = the whole split
    # CheXzero-style prompts: {finding} is replaced by each finding's phrase.
    positive_templates: tuple[str, ...] = ("{finding}.",)
    negative_templates: tuple[str, ...] = ("no {finding}.", "there is no {finding}.")
    recall_ks: tuple[int, ...] = (1, 5, 10)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    seed: int = 0
    total_steps: int = 1000
    batch_size: int = 128  # global batch, over all processes and devices
    log_every: int = 50
    eval_every: int = 0  # 0 = no evaluation during or after training
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    mesh: MeshConfig = MeshConfig()
    eval: EvalConfig = EvalConfig()
