"""Fine-tuning: multi-label classification of the data set's findings over a (pretrained) image
tower, by one of four adaptation modes:

- `linear`: the tower frozen, a logistic head trained (the ridge probe is the closed-form twin);
- `lora`: low-rank adapters (flax.nnx.LoRA) on the blocks' attention / MLP projections and the
  head train, the tower's own weights frozen (adapters merge into them for export: adapt/lora.py);
- `partial`: the last `partial_blocks` blocks, the final norm, the pooling head and the head;
- `full`: everything.

Frozen parameters get no gradient, no update and no optimizer state. Layer-wise learning-rate
decay (`layer_decay` < 1) scales block i of d by decay^(d - i) and the embeddings by
decay^(d + 1) (BEiT's rule). The loss is a binary cross-entropy per label (optionally weighted
by each label's negatives / positives in the training split, or focal), averaged over the
labels an example has: uncertain labels (-1) are left out, "not mentioned" (-2) counts as
negative (data.uncertain_policy maps uncertain labels when the data set is built).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from radfm_jax.config.ranges import non_negative, positive, ranged
from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.data.builders.registry import declared_label_names
from radfm_jax.errors import ConfigError
from radfm_jax.models.classifier import Classifier
from radfm_jax.models.layers import LoraSpec, remat_policy_name
from radfm_jax.models.towers import IMAGE_TOWERS
from radfm_jax.objectives.base import (
    Batch,
    BatchField,
    Metrics,
    Objective,
    Outputs,
    StepFlops,
    image_channels,
    image_shape,
    stacks_activation_bytes,
    step_flops,
)

POSITIVE, UNCERTAIN = 1, -1
EMBEDDINGS = ("patch_embed", "pos_emb", "cls_token")  # what comes before the first block


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(ObjectiveConfig):
    name: Literal["classify"] = dataclasses.field(default="classify", init=False)
    mode: Literal["linear", "lora", "partial", "full"] = "full"
    partial_blocks: int = positive(1)  # mode=partial: how many of the last blocks train
    lora_rank: int = positive(8)
    lora_alpha: float = positive(16.0)
    lora_targets: tuple[Literal["attention", "mlp"], ...] = ("attention", "mlp")
    layer_decay: float = ranged(1.0, gt=0, le=1)  # layer-wise learning-rate decay; 1 = none
    loss: Literal["bce", "weighted_bce", "focal"] = "bce"
    focal_gamma: float = non_negative(2.0)


def label_loss(logits: jax.Array, labels: jax.Array, *, pos_weight: jax.Array, focal_gamma: float = 0.0
               ) -> tuple[jax.Array, Metrics]:
    """Mean over examples of each example's mean binary cross-entropy over its known labels.

    logits (B, L) float; labels (B, L) int in {1, 0, -2 (negative), -1 (left out)}. Positive
    terms are weighted by `pos_weight` (L,); with `focal_gamma` > 0 each term is scaled by
    (1 - p_t)^gamma (Lin et al. 2017). Examples without a known label do not count."""
    logits = logits.astype(jnp.float32)
    known = (labels != UNCERTAIN).astype(jnp.float32)
    target = (labels == POSITIVE).astype(jnp.float32)
    log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    terms = -(pos_weight * target * log_p + (1 - target) * log_not_p)
    if focal_gamma:
        p_t = jnp.exp(jnp.where(target > 0, log_p, log_not_p))
        terms = terms * (1 - p_t) ** focal_gamma
    count = known.sum(axis=1)
    per_example = (terms * known).sum(axis=1) / jnp.maximum(count, 1.0)
    has_labels = (count > 0).astype(jnp.float32)
    loss = (per_example * has_labels).sum() / jnp.maximum(has_labels.sum(), 1.0)
    correct = ((logits > 0) == (target > 0)).astype(jnp.float32) * known
    return loss, {"label_accuracy": correct.sum() / jnp.maximum(known.sum(), 1.0)}


def _keys(path) -> tuple[str, ...]:
    return tuple(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def _block_index(keys: tuple[str, ...]) -> int | str | None:
    """Where a tower parameter sits: "stacked" (a scanned stack: all blocks in one leaf), the
    block's index (unrolled), or None (outside the blocks). Blocks are layers.Transformer's."""
    if "layers" not in keys:
        return None
    after = keys[keys.index("layers") + 1]
    return int(after) if after.isdigit() else "stacked"


class Classify(Objective):
    """The image tower (model.image) and a linear head over the data set's labels."""

    Config = ClassifyConfig
    default_evaluators = ("classification",)

    def __init__(self, config: ExperimentConfig, vocab_size: int, mesh=None, label_names: tuple[str, ...] = ()):
        super().__init__(config, vocab_size, mesh, label_names or declared_label_names(config.data.name))
        self.pos_weight = np.ones(len(self.label_names), np.float32)

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        cfg = config.objective
        if cfg.mode == "lora" and cfg.lora_rank < 1:
            raise ConfigError(f"objective.lora_rank must be >= 1, got {cfg.lora_rank}")
        if cfg.mode == "lora" and not cfg.lora_targets:
            raise ConfigError("objective.lora_targets is empty; name attention and / or mlp")
        if not 0.0 < cfg.layer_decay <= 1.0:
            raise ConfigError(f"objective.layer_decay must be in (0, 1], got {cfg.layer_decay}")
        depth = getattr(config.model.image, "depth", None)
        if cfg.mode == "partial" and not (depth is None or 1 <= cfg.partial_blocks <= depth):
            raise ConfigError(f"objective.partial_blocks={cfg.partial_blocks} must be between 1 and "
                              f"model.image.depth={depth}")

    def prepare(self, data: Any) -> None:
        """Label counts of the training split: refuse a label without positives (e.g. a small
        label fraction) and weight positives by negatives / positives for loss=weighted_bce."""
        from radfm_jax.evals.split_inference import read_targets

        _, labels = read_targets(data.sources["train"])
        positives = (labels == POSITIVE).sum(axis=0)
        negatives = ((labels != POSITIVE) & (labels != UNCERTAIN)).sum(axis=0)
        missing = [f"{name} ({int(n)} negatives)" for name, p, n in zip(self.label_names, positives, negatives) if not p]
        if missing:
            raise ConfigError(
                f"the training split ({len(labels)} studies) has no positive example of {', '.join(missing)}; "
                "raise data.train_fraction / data.train_patients or evaluate those labels elsewhere")
        if self.cfg.loss == "weighted_bce":
            self.pos_weight = (negatives / positives).astype(np.float32)

    # --- the model and the batch ------------------------------------------------------------

    def lora(self) -> LoraSpec | None:
        cfg = self.cfg
        return LoraSpec(cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets)) if cfg.mode == "lora" else None

    def build_model(self, rngs: nnx.Rngs) -> Classifier:
        return Classifier(self.config.model, image_shape(self.config), len(self.label_names), rngs=rngs,
                          lora=self.lora(), channels=image_channels(self.config))

    def batch_spec(self) -> dict[str, BatchField]:
        return {"image": super().batch_spec()["image"], "labels": BatchField((len(self.label_names),), jnp.int8)}

    def forward(self, model: Classifier, batch: Batch, extra: dict) -> Outputs:
        return {"logits": model.classify(batch["image"]), "labels": batch["labels"]}

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        gamma = self.cfg.focal_gamma if self.cfg.loss == "focal" else 0.0
        return label_loss(outputs["logits"], outputs["labels"], pos_weight=jnp.asarray(self.pos_weight),
                          focal_gamma=gamma)

    # --- what trains, and how fast ----------------------------------------------------------

    def _depth(self) -> int:
        return getattr(self.config.model.image, "depth", 0)

    def _trains(self, keys: tuple[str, ...]) -> bool:
        """Whether a parameter trains at all (partial freezing inside a stack: update_scale)."""
        mode = self.cfg.mode
        if keys[0] != "image" or mode == "full":
            return True  # the head always trains
        if mode == "linear":
            return False
        if mode == "lora":
            return "lora" in keys
        block = _block_index(keys)  # partial
        if block is None:
            return not any(name in keys for name in EMBEDDINGS)
        return block == "stacked" or block >= self._depth() - self.cfg.partial_blocks

    def trainable(self, params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda path, _: self._trains(_keys(path)), params)

    def _scale(self, keys: tuple[str, ...], leaf: Any) -> Any:
        depth, decay = self._depth(), self.cfg.layer_decay
        if keys[0] != "image":
            return 1.0
        block = _block_index(keys)
        if block is None:
            return decay ** (depth + 1) if any(name in keys for name in EMBEDDINGS) else 1.0
        if block != "stacked":
            return decay ** (depth - block)
        layers = np.arange(depth)
        scale = decay ** (depth - layers)
        if self.cfg.mode == "partial":  # a scanned stack trains its last blocks only
            scale = np.where(layers >= depth - self.cfg.partial_blocks, scale, 0.0)
        return scale.reshape(depth, *([1] * (leaf.ndim - 1))).astype(np.float32)

    def update_scale(self, params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda path, leaf: self._scale(_keys(path), leaf), params)

    # --- accounting -------------------------------------------------------------------------

    def _tower_costs(self):
        image = self.config.model.image
        return IMAGE_TOWERS[image.name].costs(image, image_shape(self.config), image_channels(self.config))

    def flops(self) -> StepFlops:
        """The tower and the head forward, and the backward: the head's weight gradient alone in
        the linear mode; otherwise counted as for a fully trained tower (an upper bound for
        lora / partial, whose frozen weights need no weight gradient)."""
        costs, labels = self._tower_costs(), len(self.label_names)
        head = 2 * costs.width * labels
        policy = remat_policy_name(self.config.model.remat)
        tower = costs.blocks_flops + costs.head_flops
        if self.cfg.mode == "linear":
            batch = self.config.batch_size
            forward = batch * (costs.input_flops + tower + head)
            return StepFlops(forward=forward, model=forward + batch * head, recompute=0.0)  # head weight grads
        return step_flops(self.config.batch_size, input_flops=costs.input_flops, differentiable=tower + head,
                          recompute=costs.recompute_flops(policy))

    def activation_bytes_per_example(self) -> float:
        return stacks_activation_bytes(self._tower_costs().stacks, self.config)
