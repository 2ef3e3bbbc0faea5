"""Typed, frozen experiment configuration. Data only: no logic lives here.

Objectives and towers are plug-ins: each declares its own config dataclass in its own module
(objectives/<name>.py, models/<tower>.py), subclassing one of the bases below and carrying a
`name`. A field typed with such a base holds whichever subclass the explicit mapping
(objectives/__init__.py OBJECTIVES, models/towers.py) lists under that name; `choices()` points
the override parser and the JSON loader at that mapping.

Every numeric field declares its allowed range as its default (config/ranges.py: `positive`,
`non_negative`, `fraction`, `finite`, `ranged`), checked for every field when a config is loaded;
plug-in configs declare theirs the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from radfm_jax.config.ranges import finite, fraction, non_negative, positive, ranged


class Choice:
    """A config chosen by its `name` field from an explicit mapping (see `choices`)."""

    name: str
    # What the mapping is called in messages ("objective", "image tower", ...); for a tower, also
    # its slot in models/towers.py TOWERS.
    kind: str = ""

    @classmethod
    def choices(cls) -> Mapping[str, type]:
        """name -> config class of every registered choice of this kind."""
        from radfm_jax.models.towers import TOWERS

        return {name: tower.Config for name, tower in TOWERS[cls.kind].items()}


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig(Choice):
    """Base of every objective's config (objectives/__init__.py OBJECTIVES)."""

    kind = "objective"

    @classmethod
    def choices(cls) -> Mapping[str, type]:
        from radfm_jax.objectives import OBJECTIVES

        return {name: objective.Config for name, objective in OBJECTIVES.items()}


@dataclasses.dataclass(frozen=True)
class ImageTowerConfig(Choice):
    """Base of image tower configs (models/towers.py IMAGE_TOWERS)."""

    kind = "image tower"


@dataclasses.dataclass(frozen=True)
class TextTowerConfig(Choice):
    """Base of text tower configs (models/towers.py TEXT_TOWERS)."""

    kind = "text tower"


@dataclasses.dataclass(frozen=True)
class ReportDecoderConfig(Choice):
    """Base of report decoder configs (models/towers.py REPORT_DECODERS)."""

    kind = "report decoder"


@dataclasses.dataclass(frozen=True)
class MaeDecoderConfig(Choice):
    """Base of MAE pixel decoder configs (models/towers.py PIXEL_DECODERS)."""

    kind = "pixel decoder"


def _default(base: type[Choice], name: str):
    """A field default: the `name` choice of `base` with its own defaults, built when an
    experiment config is made (the mapping's modules import Flax; importing this one must not)."""
    return dataclasses.field(default_factory=lambda: base.choices()[name]())


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which prepared data set to read and how to turn records into model inputs."""

    # A data set of data/builders/registry.py BUILDERS: synthetic_cxr, synthetic_ct, mimic_cxr,
    # chexpert, chexpert_plus, openi, nih_cxr14, nih_cxr14_expert, rsna_pneumonia,
    # siim_acr_pneumothorax, ct_rate.
    name: str = "synthetic_cxr"
    # Where prepared data sets live; "" means ~/.cache/radfm_jax/data (RADFM_DATA_DIR overrides).
    data_dir: str = ""
    # Real data sets: the user's own copy in its published layout (TFDS manual_dir).
    manual_dir: str = ""
    # Real data sets: the secret key file that makes patient / study ids pseudonymous, kept
    # outside data_dir so sharing prepared data never shares it (mode 0600, created on the first
    # build); "" means $RADFM_PSEUDONYM_KEY, else $XDG_CONFIG_HOME/radfm_jax/pseudonym_key
    # (~/.config/radfm_jax/pseudonym_key).
    pseudonym_key: str = ""
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
    split_seed: int = non_negative(0)
    # Scaling sweeps: train on the studies of this many patients only (0 = all): the first of a
    # permutation of the training split's patients seeded by subset_seed, so subsets nest.
    train_patients: int = non_negative(0, "0 = all")
    # Label-efficiency studies: train on this fraction of the training split's patients (1 = all),
    # the first of the same seeded permutation, so 1 % of patients lies inside 10 %.
    train_fraction: float = ranged(1.0, gt=0, le=1)
    subset_seed: int = non_negative(0)  # the permutation's seed (the data set's split stays split_seed's)
    # Builder settings (synthetic data sets only): size and rendering of the generated studies.
    num_train: int = non_negative(20_000)
    num_val: int = non_negative(1_000)
    num_test: int = non_negative(2_000)
    image_size: int = positive(64)
    build_seed: int = non_negative(0)
    # synthetic_cxr only: a known subgroup shift for testing subgroup analyses; "sex" renders
    # the findings of female patients' studies more subtly (off by default).
    subgroup_shift: Literal["none", "sex"] = "none"
    # Model-input settings.
    input_size: int = positive(64)  # images are resized to input_size x input_size
    max_text_len: int = positive(64)
    vocab_size: int = positive(1024)
    # A published model's own tokenizer (a Hugging Face tokenizer.json, or its folder) used in
    # place of the SentencePiece model trained on the data set; data.vocab_size is then unused.
    tokenizer_file: str = ""
    augment: bool = True
    # Volumes: resample every record to this voxel size, mm along (D, H, W), before cropping /
    # padding to the model's size (e.g. 1.5,1.5,1.5); empty = as stored.
    volume_spacing: tuple[float, ...] = positive((), "empty = as stored")
    # Probability that a training report is replaced by a random subset of its sentences, so
    # the text tower also learns short, prompt-like texts (zero-shot prompts are one sentence).
    report_sentence_sampling: float = fraction(0.0)
    worker_count: int = non_negative(0)  # Grain worker processes; 0 reads in the main process
    prefetch_batches: int = non_negative(2)  # batches placed on devices ahead of the step


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The towers an objective may build, each chosen by its `name`, and settings they share.
    An objective reads the slots it needs (a CLIP run ignores the decoders)."""

    image: ImageTowerConfig = _default(ImageTowerConfig, "vit")
    text: TextTowerConfig = _default(TextTowerConfig, "transformer")  # contrastive text tower
    decoder: ReportDecoderConfig = _default(ReportDecoderConfig, "transformer")  # caption, coca
    mae_decoder: MaeDecoderConfig = _default(MaeDecoderConfig, "transformer")  # mae
    embed_dim: int = positive(128)
    scan_layers: bool = True
    # What each transformer block keeps for the backward pass (models/layers.py REMAT_POLICIES):
    # none | full | dots | dots_no_batch | save_qkv_proj.
    remat: Literal["none", "full", "dots", "dots_no_batch", "save_qkv_proj"] = "none"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    init_temperature: float = positive(10.0)  # logit scale = init_temperature at start (CLIP: 1/0.07)
    init_bias: float = finite(-10.0)  # sigmoid-loss bias (SigLIP)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = positive(1e-3)
    warmup_steps: int = non_negative(200)
    min_lr_ratio: float = fraction(0.0)  # cosine decays to learning_rate * min_lr_ratio
    weight_decay: float = non_negative(0.05)
    b1: float = ranged(0.9, ge=0, lt=1)
    b2: float = ranged(0.98, ge=0, lt=1)
    grad_clip_norm: float = positive(1.0)
    # Microbatches per step: the global batch is processed in this many slices inside one
    # jitted step. Exact for every objective: contrastive ones use GradCache (embed all, loss
    # on the full batch, re-run each slice's backward), per-example ones average gradients.
    grad_accum_steps: int = positive(1)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh axis sizes within one slice; -1 takes the slice's remaining devices (at most
    one axis may). A slice is a TPU slice of a multi-slice run; a single slice, a GPU box or a
    CPU is one slice of every device. radfm_jax/parallel/mesh.py documents which device goes
    where."""

    data: int = ranged(-1, gt=0, also=(-1,), note="-1 = the remaining devices")
    fsdp: int = ranged(1, gt=0, also=(-1,), note="-1 = the remaining devices")
    tensor: int = ranged(1, gt=0, also=(-1,), note="-1 = the remaining devices")
    rules: Literal["dp", "fsdp", "fsdp_tp"] = "fsdp"
    # Multi-slice (DCN) data parallelism: the number of slices, by the devices' slice_index,
    # that the data axis spans. The mesh's data axis is dcn_data x data, slice s holding data
    # rows s*data .. (s+1)*data - 1; fsdp and tensor stay inside a slice. -1 = as many as the
    # devices form (1 on one slice, a GPU box or a CPU); any other value must equal that count.
    dcn_data: int = ranged(-1, gt=0, also=(-1,), note="-1 = the slices the devices form")


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Report decoding (radfm_jax/models/decoding.py) for `radfm generate` and the
    generation evaluator."""

    method: Literal["greedy", "beam", "sample"] = "greedy"
    beam_size: int = positive(4)
    temperature: float = positive(1.0)
    top_p: float = ranged(1.0, gt=0, le=1)
    length_penalty: float = finite(0.0)
    max_examples: int = non_negative(500, "0 = the whole split")  # reports generated per evaluation
    memorisation_ngram: int = positive(8)  # the audit's shared n-gram length


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batch_size: int = positive(256)
    split: str = "test"
    max_examples: int = non_negative(0, "0 = the whole split")
    # CheXzero-style prompts: {finding} is replaced by each finding's phrase.
    positive_templates: tuple[str, ...] = ("{finding}.",)
    negative_templates: tuple[str, ...] = ("no {finding}.", "there is no {finding}.")
    recall_ks: tuple[int, ...] = positive((1, 5, 10))
    # Which evaluators run; empty = the objective's own (contrastive: zeroshot_retrieval;
    # mae: linear_probe; caption: generation; coca: zeroshot_retrieval and generation;
    # classify: classification). zeroshot_prompts is added whenever prompt_sets is set.
    evaluators: tuple[Literal["zeroshot_retrieval", "linear_probe", "generation", "classification",
                              "robustness", "zeroshot_prompts"], ...] = ()
    probe_train_examples: int = non_negative(5000, "0 = the whole split")  # training-split rows the linear probe is fitted on
    generate: GenerateConfig = GenerateConfig()
    # 95 % intervals of AUROC / AUPRC (zero-shot, probe, classification) from this many
    # patient-level bootstrap resamples of the evaluated split (0 = point estimates only).
    bootstrap: int = non_negative(0, "0 = point estimates only")
    # The operating point, chosen on the val split and applied to the evaluated one: "youden",
    # "fpr:<x>" (most sensitive with FPR <= x) or "sensitivity:<x>".
    operating_point: str = "youden"
    # Val-split rows the zero-shot evaluator scores to choose its per-finding thresholds (the
    # classification evaluator reads all of val).
    threshold_examples: int = non_negative(5000, "0 = the whole split")
    # Also report zero-shot F1 / accuracy / ... at thresholds tuned on the evaluated split itself
    # (best F1 there), the optimistic convention some 3D papers use, under zeroshot/test_tuned/...
    # only; the honest keys always use thresholds chosen on val.
    test_tuned: bool = False
    calibration_bins: int = positive(15)
    # Subgroup analysis (classification): attributes to compare (sex, age, view) at one
    # threshold per finding chosen on val at this false-positive rate (Glocker et al.).
    subgroups: tuple[Literal["sex", "age", "view"], ...] = ("sex", "age", "view")
    subgroup_fpr: float = fraction(0.2)
    # Robustness: acquisition shifts (evals/perturbations.py: resolution, gamma, contrast,
    # noise, jpeg, rotate), each at severities 1-3.
    perturbations: tuple[str, ...] = ()
    # Prompt robustness: JSON files of hand-written zero-shot prompts (evals/prompt_sets.py),
    # each scored as one set by the zeroshot_prompts evaluator (contrastive models).
    prompt_sets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """Start the image tower from another run's checkpoint (fine-tuning, continued pretraining):
    the tower the `workdir`'s objective trained, at `step` (0 = its latest checkpoint); or start
    from published `weights`."""

    workdir: str = ""
    step: int = non_negative(0, "0 = the latest checkpoint")
    # A 2D ViT run starting a vit3d: its patch kernel is divided over the tubelet's slices
    # ("average") or put on the centre slice ("centre"); either way a volume of identical
    # slices gives the 2D features. A vit3d run at another volume size has its position
    # embedding resized.
    inflate: Literal["average", "centre"] = "average"
    # Or a published checkpoint the user holds (radfm_jax/weights: a Hugging Face CLIPModel
    # folder or its weights file; `radfm weights import` sets the model fields to match): a
    # two-tower objective (clip, siglip) starts from all of it, any other from its image tower.
    weights: str = ""
    # A published text encoder (a BERT-family folder, or a CLIP one's text tower) for the
    # two-tower model's text tower, with or without `weights` (BiomedCLIP: a ViT and a BERT).
    text_weights: str = ""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    seed: int = non_negative(0)
    total_steps: int = positive(1000)
    batch_size: int = positive(128)  # global batch, over all processes and devices
    log_every: int = positive(50)
    eval_every: int = non_negative(0, "0 = no evaluation")  # during or after training
    checkpoint_every: int = positive(500)
    keep_checkpoints: int = positive(3)
    data: DataConfig = DataConfig()
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    objective: ObjectiveConfig = _default(ObjectiveConfig, "clip")
    optim: OptimConfig = OptimConfig()
    mesh: MeshConfig = MeshConfig()
    eval: EvalConfig = EvalConfig()
    init: InitConfig = InitConfig()
