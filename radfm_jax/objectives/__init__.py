"""Pure loss functions of model outputs.

The trainer calls a contrastive objective as ``loss_fn(outputs) -> (loss, metrics)`` where
``outputs`` is the two-tower model's dict with keys ``image_emb`` ``(B, D)``, ``text_emb``
``(B, D)``, ``logit_scale`` (the exponentiated multiplier, scalar) and ``logit_bias`` (scalar;
ignored by ``"clip"``, required by ``"siglip"``). Objectives are chosen by name through the
explicit mapping :data:`CONTRASTIVE_OBJECTIVES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from radfm_jax.objectives.clip import clip_loss
from radfm_jax.objectives.siglip import siglip_loss

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

__all__ = ["CONTRASTIVE_OBJECTIVES", "ContrastiveObjective", "clip_loss", "siglip_loss"]
