"""The objectives, by name: the one mapping the trainer, the config loader and the tools read.
Each objective is one module (objectives/base.py describes what it declares); adding one is
its module plus one line here."""

from __future__ import annotations

from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.objectives.base import Objective
from radfm_jax.objectives.caption import Caption
from radfm_jax.objectives.classify import Classify
from radfm_jax.objectives.clip import Clip
from radfm_jax.objectives.coca import Coca
from radfm_jax.objectives.dino import Dino
from radfm_jax.objectives.mae import Mae
from radfm_jax.objectives.siglip import Siglip

OBJECTIVES: dict[str, type[Objective]] = {
    "clip": Clip,
    "siglip": Siglip,
    "mae": Mae,
    "caption": Caption,
    "coca": Coca,
    "classify": Classify,
    "dino": Dino,
}


def make_objective(config: ExperimentConfig, vocab_size: int, mesh: Mesh | None = None,
                   label_names: tuple[str, ...] = ()) -> Objective:
    """The objective config.objective names, bound to the config (`mesh`: for losses split
    over the devices, e.g. chunked SigLIP; `label_names`: the data set's, when known)."""
    return OBJECTIVES[config.objective.name](config, vocab_size, mesh, label_names)
