"""What each objective trains: its model, how a batch feeds the model, its loss, the random
per-example inputs the step draws and the evaluators it reports. One trainer (train/step.py,
train/loop.py) runs them all; `make_task` chooses by an explicit mapping of names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.models.captioner import Captioner, CoCa
from radfm_jax.models.mae import MaskedAutoencoder
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.objectives import contrastive_objective
from radfm_jax.objectives.caption import caption_loss
from radfm_jax.objectives.coca import coca_loss
from radfm_jax.objectives.mae import mae_loss
from radfm_jax.parallel.mesh import BATCH_AXES
from radfm_jax.train.step import DrawInputs, Forward, LossFn, two_tower_forward

ZEROSHOT_RETRIEVAL, LINEAR_PROBE, GENERATION = "zeroshot_retrieval", "linear_probe", "generation"


@dataclasses.dataclass(frozen=True)
class Task:
    model_factory: Callable[[], nnx.Module]
    forward: Forward
    loss_fn: LossFn
    # True when the loss couples examples (a contrastive term): accumulation uses GradCache.
    batch_coupled: bool
    draw_inputs: DrawInputs | None
    evaluators: tuple[str, ...]  # the objective's own, used when eval.evaluators is empty


def _factory(config: ExperimentConfig, build: Callable[..., nnx.Module], **kwargs) -> Callable[[], nnx.Module]:
    # A fresh model each call, Rngs made inside so the call can be traced (jit, eval_shape).
    def factory() -> nnx.Module:
        return build(rngs=nnx.Rngs(config.seed), **kwargs)

    return factory


def _text_model_kwargs(config: ExperimentConfig, vocab_size: int) -> dict[str, Any]:
    return dict(cfg=config.model, vocab_size=vocab_size, max_text_len=config.data.max_text_len,
                image_size=config.data.input_size)


def _contrastive(config: ExperimentConfig, vocab_size: int, mesh: Mesh) -> Task:
    return Task(
        model_factory=_factory(config, TwoTower, **_text_model_kwargs(config, vocab_size)),
        forward=two_tower_forward,
        loss_fn=contrastive_objective(config.objective, mesh, BATCH_AXES),
        batch_coupled=True,
        draw_inputs=None,
        evaluators=(ZEROSHOT_RETRIEVAL,),
    )


def _mae(config: ExperimentConfig, vocab_size: int, mesh: Mesh) -> Task:
    model = config.model
    num_patches = (config.data.input_size // model.image.patch_size) ** 2

    def draw(key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
        return {"mae_noise": jax.random.uniform(key, (batch_size, num_patches))}

    def forward(mae: MaskedAutoencoder, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return mae(batch["image"], batch["mae_noise"])

    def loss(outputs: dict[str, jax.Array]):
        return mae_loss(outputs["pred"], outputs["target"], outputs["mask"], norm_pix=config.objective.norm_pix_loss)

    factory = _factory(config, MaskedAutoencoder, image=model.image, decoder=model.mae_decoder,
                       image_size=config.data.input_size, mask_ratio=config.objective.mask_ratio,
                       dtype=jnp.dtype(model.compute_dtype), scan_layers=model.scan_layers, remat=model.remat)
    return Task(factory, forward, loss, batch_coupled=False, draw_inputs=draw, evaluators=(LINEAR_PROBE,))


def _caption(config: ExperimentConfig, vocab_size: int, mesh: Mesh) -> Task:
    fraction = config.objective.parallel_fraction

    def draw(key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
        return {"parallel": jax.random.uniform(key, (batch_size,)) < fraction}

    def forward(captioner: Captioner, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return captioner(batch["image"], batch["tokens"], batch.get("parallel"))

    def loss(outputs: dict[str, jax.Array]):
        return caption_loss(outputs["logits"], outputs["targets"], label_smoothing=config.objective.label_smoothing)

    return Task(_factory(config, Captioner, **_text_model_kwargs(config, vocab_size)), forward, loss,
                batch_coupled=False, draw_inputs=draw if fraction > 0 else None, evaluators=(GENERATION,))


def _coca(config: ExperimentConfig, vocab_size: int, mesh: Mesh) -> Task:
    objective = config.objective
    contrastive = contrastive_objective(dataclasses.replace(objective, name=objective.contrastive), mesh, BATCH_AXES)

    def loss(outputs: dict[str, jax.Array]):
        return coca_loss(outputs, contrastive, contrastive_weight=objective.contrastive_weight,
                         caption_weight=objective.caption_weight, label_smoothing=objective.label_smoothing)

    return Task(_factory(config, CoCa, **_text_model_kwargs(config, vocab_size)), two_tower_forward, loss,
                batch_coupled=True, draw_inputs=None, evaluators=(ZEROSHOT_RETRIEVAL, GENERATION))


TASKS: dict[str, Callable[[ExperimentConfig, int, Mesh], Task]] = {
    "clip": _contrastive,
    "siglip": _contrastive,
    "mae": _mae,
    "caption": _caption,
    "coca": _coca,
}


def make_task(config: ExperimentConfig, vocab_size: int, mesh: Mesh) -> Task:
    return TASKS[config.objective.name](config, vocab_size, mesh)
