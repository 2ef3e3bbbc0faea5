"""Pure loss functions of model outputs.

The trainer calls a contrastive objective as ``loss_fn(outputs) -> (loss, metrics)`` where
``outputs`` is the two-tower model's dict with keys ``image_emb`` ``(B, D)``, ``text_emb``
``(B, D)``, ``logit_scale`` (the exponentiated multiplier, scalar) and ``logit_bias`` (scalar;
ignored by ``"clip"``, required by ``"siglip"``). Objectives are chosen by name through the
explicit mapping :data:`CONTRASTIVE_OBJECTIVES`; :func:`contrastive_objective` turns an
``ObjectiveConfig`` into one, including SigLIP's chunked form, which needs the device mesh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.sharding import Mesh

from radfm_jax.config.schema import ObjectiveConfig
from radfm_jax.errors import ConfigError
from radfm_jax.objectives.clip import clip_loss
from radfm_jax.objectives.siglip import siglip_loss
from radfm_jax.objectives.siglip_chunked import chunked_siglip_loss

ContrastiveObjective = Callable[[Mapping[str, Any]], tuple[jax.Array, dict[str, jax.Array]]]


def _clip_from_outputs(outputs: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    return clip_loss(outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"])


def _siglip_from_outputs(outputs: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    return siglip_loss(
        outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"], outputs["logit_bias"]
    )


CONTRASTIVE_OBJECTIVES: dict[str, ContrastiveObjective] = {
    "clip": _clip_from_outputs,
    "siglip": _siglip_from_outputs,
}



def contrastive_objective(
    cfg: ObjectiveConfig, mesh: Mesh, batch_axes: tuple[str, ...]
) -> ContrastiveObjective:
    """The objective `cfg` names; with ``chunked`` the SigLIP ring over `batch_axes` of `mesh`."""
    if not cfg.chunked:
        return CONTRASTIVE_OBJECTIVES[cfg.name]
    if cfg.name != "siglip":
        raise ConfigError(
            f"objective.chunked=True is the SigLIP paper's chunked loss; objective.name="
            f"'{cfg.name}' has no chunked form. Use objective.name=siglip or objective.chunked=False"
        )

    def chunked_siglip(outputs: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        return chunked_siglip_loss(
            outputs["image_emb"], outputs["text_emb"], outputs["logit_scale"],
            outputs["logit_bias"], mesh=mesh, batch_axes=batch_axes,
        )

    return chunked_siglip


__all__ = [
    "CONTRASTIVE_OBJECTIVES",
    "ContrastiveObjective",
    "chunked_siglip_loss",
    "clip_loss",
    "contrastive_objective",
    "siglip_loss",
]
