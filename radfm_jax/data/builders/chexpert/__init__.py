"""chexpert: CheXpert-v1.0 / -small from the user's copy (images + 14 labels, no reports)."""

from radfm_jax.data.builders.chexpert.builder import Chexpert, ChexpertConfig

__all__ = ["Chexpert", "ChexpertConfig"]
