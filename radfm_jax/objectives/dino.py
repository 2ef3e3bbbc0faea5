"""Self-distillation with an EMA teacher: DINO's class-token loss across multi-crop views, iBOT's
masked-patch loss and the KoLeo regulariser (DINOv2, Oquab et al. 2024; RAD-DINO, Pérez-García
et al. 2025).

The student sees two global views (a random `mask_ratio` of their patches replaced by the mask
token) and `local_count` small local views; the teacher, an exponential moving average of the
student kept in the train state's extra state, sees the two global views whole. Teacher outputs
are centred (a running mean, updated from each batch) and sharpened (`teacher_temp`), student
outputs softened (`student_temp`); the losses are cross-entropies between them:

- DINO: the teacher's class token on each global view against the student's on every other view;
- iBOT: the teacher's patch tokens against the student's at the masked patches of the same view;
- KoLeo: -mean log(distance to the nearest other student class feature in the batch), per global
  view, which spreads the features out.

The teacher's momentum follows a cosine from `teacher_momentum` to 1 over the run.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from radfm_jax.config.ranges import non_negative, positive, ranged
from radfm_jax.config.schema import ExperimentConfig, ObjectiveConfig
from radfm_jax.data.model_inputs import is_volume_dataset
from radfm_jax.data.multicrop import MultiCrop
from radfm_jax.errors import ConfigError
from radfm_jax.models.costs import F32
from radfm_jax.models.dino import DinoModel
from radfm_jax.models.layers import remat_policy_name
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
    with_params,
)


@dataclasses.dataclass(frozen=True)
class DinoConfig(ObjectiveConfig):
    name: Literal["dino"] = dataclasses.field(default="dino", init=False)
    prototypes: int = positive(1024)  # K: the head's outputs (DINOv2: 65536)
    head_hidden: int = positive(512)  # DINOv2: 2048
    head_bottleneck: int = positive(64)  # DINOv2: 256
    local_count: int = non_negative(4, "0 = global views only")  # DINOv2: 8
    local_size: int = positive(32)  # local views' side in pixels, a multiple of the patch (DINOv2: 98 at 224)
    student_temp: float = positive(0.1)
    teacher_temp: float = positive(0.04)
    center_momentum: float = ranged(0.9, ge=0, lt=1)
    teacher_momentum: float = ranged(0.996, ge=0, le=1)  # at step 0; cosine to 1 at total_steps
    mask_ratio: float = ranged(0.3, ge=0, lt=1)  # patches of the student's global views masked (iBOT)
    ibot_weight: float = non_negative(1.0)
    koleo_weight: float = non_negative(0.1)


def dino_loss(teacher_logits: jax.Array, student_logits: jax.Array, center: jax.Array, teacher_temp: float,
              student_temp: float) -> jax.Array:
    """teacher (B, 2, K) on the global views, student (B, V, K) on the global views then the
    local ones -> the mean over examples and (teacher view, other student view) pairs of the
    cross-entropy between the centred, sharpened teacher and the student."""
    teacher = jax.nn.softmax((teacher_logits - center) / teacher_temp, axis=-1)
    student = jax.nn.log_softmax(student_logits / student_temp, axis=-1)
    cross = -jnp.einsum("btk,bsk->bts", teacher, student)  # (B, 2, V)
    views = student.shape[1]
    other = 1.0 - jnp.eye(2, views)  # a teacher view is not compared with the same student view
    return jnp.mean(jnp.sum(cross * other, axis=(1, 2)) / jnp.sum(other))


def ibot_loss(teacher_logits: jax.Array, student_logits: jax.Array, mask: jax.Array, center: jax.Array,
              teacher_temp: float, student_temp: float) -> jax.Array:
    """teacher / student (B, 2, N, K) patch logits, mask (B, 2, N) True where the student saw the
    mask token -> per view, the mean cross-entropy over its masked patches; averaged over views
    (a view without masked patches counts 0)."""
    teacher = jax.nn.softmax((teacher_logits - center) / teacher_temp, axis=-1)
    student = jax.nn.log_softmax(student_logits / student_temp, axis=-1)
    cross = -jnp.sum(teacher * student, axis=-1)  # (B, 2, N)
    hidden = mask.astype(jnp.float32)
    return jnp.mean(jnp.sum(cross * hidden, axis=-1) / jnp.maximum(jnp.sum(hidden, axis=-1), 1.0))


def koleo_loss(features: jax.Array, eps: float = 1e-8) -> jax.Array:
    """features (B, V, D) -> per view, -mean over examples of log(distance from its L2-normalised
    feature to the nearest other one in the batch); averaged over views."""
    unit = features * jax.lax.rsqrt(jnp.maximum(jnp.sum(features * features, -1, keepdims=True), 1e-12))
    unit = jnp.swapaxes(unit, 0, 1)  # (V, B, D)
    similarity = jnp.einsum("vbd,vcd->vbc", unit, unit)
    similarity = jnp.where(jnp.eye(unit.shape[1], dtype=bool), -2.0, similarity)
    nearest = jnp.max(similarity, axis=-1)  # the nearest other example's cosine
    distance = jnp.sqrt(jnp.maximum(2.0 - 2.0 * nearest, 0.0))
    return -jnp.mean(jnp.log(distance + eps))


def teacher_momentum(step: jax.Array, start: float, total_steps: int) -> jax.Array:
    """start at step 0, rising along a cosine to 1 at total_steps."""
    progress = jnp.minimum(step.astype(jnp.float32) / max(total_steps, 1), 1.0)
    return 1.0 - (1.0 - start) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


class Dino(Objective):
    """The image tower (model.image, a ViT with pool=cls) with the DINO head, its EMA teacher
    in the extra state; multi-crop views from the pipeline (data/multicrop.py)."""

    Config = DinoConfig
    batch_coupled = True  # KoLeo compares the examples of a batch
    default_evaluators = ("linear_probe",)

    @classmethod
    def check(cls, config: ExperimentConfig) -> None:
        image, cfg = config.model.image, config.objective
        if is_volume_dataset(config.data.name) or image.name != "vit" or image.pool != "cls":
            raise ConfigError("objective.name=dino trains a 2D ViT with a class token: set model.image.name=vit "
                              "and model.image.pool=cls (on a 2D data set)")
        if cfg.local_count and cfg.local_size % image.patch_size:
            raise ConfigError(f"objective.local_size={cfg.local_size} is not a multiple of "
                              f"model.image.patch_size={image.patch_size}")

    def build_model(self, rngs: nnx.Rngs) -> DinoModel:
        cfg = self.cfg
        return DinoModel(self.config.model, image_shape(self.config), hidden=cfg.head_hidden,
                         bottleneck=cfg.head_bottleneck, prototypes=cfg.prototypes, rngs=rngs,
                         channels=image_channels(self.config))

    def _patches(self) -> int:
        image = self.config.model.image
        return IMAGE_TOWERS[image.name].num_patches_of(image, image_shape(self.config))

    def batch_spec(self) -> dict[str, BatchField]:
        channels, size, local = image_channels(self.config), image_shape(self.config), self.cfg.local_size
        spec = {"global_views": BatchField((2, *size, channels), jnp.float32)}
        if self.cfg.local_count:
            spec["local_views"] = BatchField((self.cfg.local_count, local, local, channels), jnp.float32)
        return spec

    def data_transforms(self) -> tuple:
        return (MultiCrop(size=self.config.data.input_size, local_size=self.cfg.local_size,
                          local_count=self.cfg.local_count),)

    def draw_inputs(self, key: jax.Array, batch_size: int) -> Batch:
        return {"ibot_noise": jax.random.uniform(key, (batch_size, 2, self._patches()))}

    def init_extra(self, params):
        k = self.cfg.prototypes
        return {"teacher": jax.tree.map(lambda x: x, params), "center": jnp.zeros((k,), jnp.float32),
                "patch_center": jnp.zeros((k,), jnp.float32)}

    def update_extra(self, extra, params, step, signals):
        cfg = self.cfg
        m = teacher_momentum(step, cfg.teacher_momentum, self.config.total_steps)
        c = cfg.center_momentum
        return {"teacher": jax.tree.map(lambda t, s: m * t + (1.0 - m) * s, extra["teacher"], params),
                "center": c * extra["center"] + (1.0 - c) * signals["_center"],
                "patch_center": c * extra["patch_center"] + (1.0 - c) * signals["_patch_center"]}

    def forward(self, model: DinoModel, batch: Batch, extra: dict) -> Outputs:
        views = batch["global_views"]
        mask = batch["ibot_noise"] < self.cfg.mask_ratio
        teacher = jax.lax.stop_gradient(with_params(model, extra["teacher"])(views, jnp.zeros_like(mask)))
        student = model(views, mask)
        cls_logits = student["cls_logits"]
        if self.cfg.local_count:
            cls_logits = jnp.concatenate([cls_logits, model(batch["local_views"])["cls_logits"]], axis=1)
        return {"teacher_cls": teacher["cls_logits"], "teacher_patch": teacher["patch_logits"],
                "student_cls": cls_logits, "student_patch": student["patch_logits"], "mask": mask,
                "features": student["features"], "center": extra["center"], "patch_center": extra["patch_center"]}

    def loss(self, outputs: Outputs) -> tuple[jax.Array, Metrics]:
        cfg = self.cfg
        dino = dino_loss(outputs["teacher_cls"], outputs["student_cls"], outputs["center"], cfg.teacher_temp,
                         cfg.student_temp)
        ibot = ibot_loss(outputs["teacher_patch"], outputs["student_patch"], outputs["mask"], outputs["patch_center"],
                         cfg.teacher_temp, cfg.student_temp)
        koleo = koleo_loss(outputs["features"])
        total = dino + cfg.ibot_weight * ibot + cfg.koleo_weight * koleo
        return total, {"dino_loss": dino, "ibot_loss": ibot, "koleo_loss": koleo,
                       "_center": jnp.mean(outputs["teacher_cls"], axis=(0, 1)),
                       "_patch_center": jnp.mean(outputs["teacher_patch"], axis=(0, 1, 2))}

    # --- accounting -------------------------------------------------------------------------

    def _view_costs(self):
        """(global view, local view) tower costs, the head's per-token FLOPs."""
        image, shape, channels = self.config.model.image, image_shape(self.config), image_channels(self.config)
        tower = IMAGE_TOWERS[image.name]
        global_costs = tower.costs(image, shape, channels)
        local_shape = (self.cfg.local_size,) * len(shape)
        local_costs = tower.costs(image, local_shape, channels)
        cfg = self.cfg
        head = 2 * (image.width * cfg.head_hidden + cfg.head_hidden ** 2 + cfg.head_hidden * cfg.head_bottleneck
                    + cfg.head_bottleneck * cfg.prototypes)
        return global_costs, local_costs, head

    def flops(self) -> StepFlops:
        """Student: the tower on 2 global and local_count local views, the head on every global
        token and each local class token (differentiated); teacher: forward only on the 2
        global views with the head on every token."""
        global_costs, local_costs, head = self._view_costs()
        tokens = self._patches() + 1
        n_local = self.cfg.local_count
        student = 2 * (global_costs.blocks_flops + tokens * head) + n_local * (local_costs.blocks_flops + head)
        teacher = 2 * (global_costs.input_flops + global_costs.blocks_flops + tokens * head)
        policy = remat_policy_name(self.config.model.remat)
        recompute = 2 * global_costs.recompute_flops(policy) + n_local * local_costs.recompute_flops(policy)
        flops = step_flops(self.config.batch_size, input_flops=2 * global_costs.input_flops
                           + n_local * local_costs.input_flops, differentiable=student, recompute=recompute)
        batch = self.config.batch_size
        return dataclasses.replace(flops, forward=flops.forward + batch * teacher, model=flops.model + batch * teacher)

    def activation_bytes_per_example(self) -> float:
        """The student's stacks on every view, and the head's logits kept for the loss (student
        and teacher, every global token)."""
        global_costs, local_costs, _ = self._view_costs()
        stacks = [dataclasses.replace(s, depth=s.depth * 2) for s in global_costs.stacks]
        if self.cfg.local_count:
            stacks += [dataclasses.replace(s, depth=s.depth * self.cfg.local_count) for s in local_costs.stacks]
        logits = 2 * 2 * (self._patches() + 1) * self.cfg.prototypes * F32
        return stacks_activation_bytes(stacks, self.config, extra_saved=logits)
