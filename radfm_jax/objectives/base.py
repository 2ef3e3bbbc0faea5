"""What an objective declares: the one interface between an objective module and the trainer.

An objective module (objectives/<name>.py) defines a frozen config dataclass (a subclass of
`ObjectiveConfig` with its own fields) and a subclass of `Objective` that says

- which model it trains, by building it from named towers (`build_model`);
- what a batch must hold (`batch_spec`) and which per-example random inputs the step draws
  (`draw_inputs`, keyed by (seed, step), so resumed and microbatched steps draw the same);
- how a batch feeds the model (`forward`) and the loss of its outputs (`loss`);
- state it keeps besides the parameters (`init_extra` / `update_extra`: an EMA teacher, a
  centre), and host transforms that add inputs to each example (`data_transforms`: extra views);
- its analytic FLOPs (`flops`) and activation memory (`activation_bytes_per_example`);
- the evaluators it reports by default and the config checks only it can make (`check`).

objectives/__init__.py maps each name to its class; nothing else compares objective names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.data.model_inputs import input_channels, input_shape
from radfm_jax.errors import ConfigError
from radfm_jax.models.costs import F32, BlockStack
from radfm_jax.models.layers import remat_policy_name
from radfm_jax.models.text import EOS_ID, PAD_ID

Batch = dict[str, jax.Array]
Outputs = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class BatchField:
    """One entry of a batch: its shape per example and its dtype."""

    shape: tuple[int, ...]
    dtype: Any


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimizer step on the global batch."""

    forward: float  # forward pass of the whole model and its loss
    model: float  # forward + backward: the numerator of MFU
    recompute: float  # forward matmuls run again by remat or GradCache (0 without either)

    @property
    def hardware(self) -> float:
        """What the chips execute: model FLOPs plus recomputed forward passes."""
        return self.model + self.recompute


def step_flops(batch: int, *, input_flops: float, differentiable: float, coupled: float = 0.0,
               recompute: float = 0.0) -> StepFlops:
    """Per-example `input_flops` (matmuls on the raw input, e.g. the patch embedding: its
    backward needs no gradient with respect to the images, so 2x not 3x) and `differentiable`
    FLOPs, plus `coupled` FLOPs of the whole batch (contrastive logits) -> the step's counts.
    Forward + backward is 3x the forward (the backward computes both the input and the weight
    gradient of every matmul). `recompute` is per example."""
    differentiable_total = batch * differentiable + coupled
    return StepFlops(forward=batch * input_flops + differentiable_total,
                     model=3 * differentiable_total + 2 * batch * input_flops,
                     recompute=batch * recompute)


def compute_bytes(config: ExperimentConfig) -> int:
    return 2 if config.model.compute_dtype == "bfloat16" else F32


def stacks_activation_bytes(stacks: Sequence[BlockStack], config: ExperimentConfig, *,
                            extra_saved: float = 0.0) -> float:
    """Per example: what the stacks keep for the backward pass, plus one block's backward
    working set (twice under remat: the recomputed arrays and their cotangents) and
    `extra_saved` bytes the objective's head keeps (models/costs.py)."""
    c, policy = compute_bytes(config), remat_policy_name(config.model.remat)
    saved = sum(stack.saved_bytes(c, policy) for stack in stacks) + extra_saved
    block = max((stack.materialized_bytes(c) for stack in stacks), default=0.0)
    return saved + block + (0.0 if policy == "none" else block)


def image_shape(config: ExperimentConfig) -> tuple[int, ...]:
    """The spatial shape of model inputs: (input_size, input_size) radiographs, or (D, H, W)
    volumes of a volumetric data set (data/model_inputs.py)."""
    return input_shape(config.data)


def image_channels(config: ExperimentConfig) -> int:
    """Channels of model inputs: 1 for radiographs, one per HU window for volumes."""
    return input_channels(config.data)


class Objective:
    """A pretraining objective bound to one experiment config (and the tokenizer's vocabulary
    size and the device mesh, which some losses need). Subclasses set `Config` and override
    `build_model`, `forward`, `loss`, `flops` and `activation_bytes_per_example`; the rest
    have defaults that suit an image-report objective without extra state."""

    Config: ClassVar[type[ObjectiveConfig]]
    # True when the loss couples the examples of a batch (a contrastive term): gradient
    # accumulation then uses GradCache; otherwise the loss must be a mean of per-example losses.
    batch_coupled: ClassVar[bool] = False
    # The evaluators (evals/evaluators) run when eval.evaluators is empty.
    default_evaluators: ClassVar[tuple[str, ...]] = ()
    # Where the model keeps its image tower (what a later run can start from: config.init).
    image_tower_path: ClassVar[tuple[str, ...]] = ("image",)
    # (params -> a bool per leaf) when some parameters stay frozen: they get no gradient, no
    # update and no optimizer state; None trains everything.
    trainable: ClassVar[Callable[[Any], Any] | None] = None
    # (params -> a factor per leaf multiplying its updates, e.g. layer-wise learning-rate decay).
    update_scale: ClassVar[Callable[[Any], Any] | None] = None

    def __init__(self, config: ExperimentConfig, vocab_size: int, mesh: Mesh | None = None,
                 label_names: tuple[str, ...] = ()):
        self.config = config
        self.vocab_size = vocab_size
        self.mesh = mesh
        self.label_names = tuple(label_names)  # the data set's, when known

    @property
    def cfg(self) -> Any:
        """This objective's own config (config.objective)."""
        return self.config.objective

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        """Raise ConfigError for settings this objective cannot train (after type checks)."""

    def prepare(self, data: Any) -> None:
        """Read what the objective needs from the prepared data (data/datasets.PreparedData)
        before the model is built, e.g. label statistics; called when the run has its data."""

    # --- the model --------------------------------------------------------------------------

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        raise NotImplementedError

    def model_factory(self) -> Callable[[], nnx.Module]:
        """A fresh model per call, its Rngs made inside so the call can be traced (jit,
        eval_shape)."""
        seed = self.config.seed
        return lambda: self.build_model(nnx.Rngs(seed))

    # --- the batch --------------------------------------------------------------------------

    def batch_spec(self) -> dict[str, BatchField]:
        """The entries a train batch must hold, each split over the batch axes."""
        return {"image": BatchField((*image_shape(self.config), image_channels(self.config)), jnp.float32),
                "tokens": BatchField((self.config.data.max_text_len,), jnp.int32)}

    def data_transforms(self) -> tuple[Any, ...]:
        """Grain transforms run on each training example after the standard ones (decode,
        augment, tokenize): where an objective adds inputs of its own, e.g. extra views."""
        return ()

    def draw_inputs(self, key: jax.Array, batch_size: int) -> Batch:
        """Per-example random inputs (MAE masks, CapPa rows), drawn for the whole global batch
        before it is split into microbatches; {} when the objective draws nothing."""
        return {}

    # --- the step ---------------------------------------------------------------------------

    def forward(self, model: nnx.Module, batch: Batch, extra: Any) -> Outputs:
        """The outputs the loss reads; `extra` is the objective's own state (init_extra)."""
        raise NotImplementedError

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        raise NotImplementedError

    def init_extra(self, params: Any) -> Any:
        """State trained alongside the parameters but not by the optimizer (an EMA teacher);
        checkpointed with them. Traced: `params` may be abstract."""
        return {}

    def update_extra(self, extra: Any, params: Any, step: jax.Array, signals: Metrics) -> Any:
        """The extra state after an optimizer update that produced `params` at `step`;
        `signals` are the loss's metrics whose names start with "_" (batch statistics such as
        DINO's centres), which are not logged."""
        return extra

    # --- accounting -------------------------------------------------------------------------

    def flops(self) -> StepFlops:
        """Analytic FLOPs of one train step on config.batch_size examples."""
        raise NotImplementedError

    def activation_bytes_per_example(self) -> float:
        """What one example's forward pass keeps for the backward pass, plus the backward
        working set (models/costs.py); tools/memory_estimate.py adds the train state."""
        raise NotImplementedError

    def random_batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        """A host batch of `batch_spec`'s shapes with random content (benchmarks, tests):
        images ~ N(0, 1); token rows of ids, an EOS and padding; other integers zero."""
        batch = {}
        for key, spec in self.batch_spec().items():
            shape = (batch_size, *spec.shape)
            if key == "tokens":
                batch[key] = random_reports(rng, shape, self.vocab_size)
            elif jnp.issubdtype(spec.dtype, jnp.floating):
                batch[key] = rng.normal(size=shape).astype(spec.dtype)
            else:
                batch[key] = np.zeros(shape, spec.dtype)
        return batch


def with_params(model: nnx.Module, params: Any) -> nnx.Module:
    """`model`'s graph with other parameters of the same structure (a pure dict): how an
    objective runs a teacher kept in its extra state through the student's model."""
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    state = jax.tree.map(lambda x: x, state)  # fresh Variables to fill
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state, rest)


def random_reports(rng: np.random.Generator, shape: tuple[int, int], vocab_size: int) -> np.ndarray:
    """Token rows of varied length: ids >= 3, then EOS (2), then padding (0)."""
    batch, length = shape
    tokens = rng.integers(3, vocab_size, shape).astype(np.int32)
    ends = rng.integers(max(1, length // 4), length, batch)
    positions = np.arange(length)[None]
    tokens[positions == ends[:, None]] = EOS_ID
    tokens[positions > ends[:, None]] = PAD_ID
    return tokens


def check_fraction(name: str, value: float, *, low: float, high: float, open_low: bool = False,
                   open_high: bool = False) -> None:
    """A ConfigError naming `name` unless low <(=) value <(=) high."""
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (above and below):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"{name} must be in {left}{low}, {high}{right}, got {value}")

