"""CoCa (Yu et al. 2022): a weighted sum of an image-report contrastive loss and the
captioning loss, both from one forward pass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from radfm_jax.objectives.caption import caption_loss

Metrics = dict[str, jax.Array]


def coca_loss(
    outputs: Mapping[str, Any],
    contrastive: Callable[[Mapping[str, Any]], tuple[jax.Array, Metrics]],
    *,
    contrastive_weight: float,
    caption_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, Metrics]:
    """contrastive_weight * contrastive(outputs) + caption_weight * caption loss; both terms
    and their metrics are reported."""
    con, con_metrics = contrastive(outputs)
    cap, cap_metrics = caption_loss(outputs["logits"], outputs["targets"], label_smoothing=label_smoothing)
    loss = contrastive_weight * con + caption_weight * cap
    return loss, {**con_metrics, **cap_metrics, "contrastive_loss": con, "caption_loss": cap}
