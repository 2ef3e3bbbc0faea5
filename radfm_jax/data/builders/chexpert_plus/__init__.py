"""chexpert_plus: CheXpert images and labels joined with the CheXpert Plus reports."""

from radfm_jax.data.builders.chexpert_plus.builder import ChexpertPlus, ChexpertPlusConfig

__all__ = ["ChexpertPlus", "ChexpertPlusConfig"]
