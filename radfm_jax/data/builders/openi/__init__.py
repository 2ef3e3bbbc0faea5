"""openi: Open-i / IU X-ray chest radiographs with reports from the user's copy
(ecgen-radiology/*.xml + NLMCXR_png/*.png; views from Kaggle's indiana_projections.csv if present)."""

from radfm_jax.data.builders.openi.builder import OpenI, OpenIConfig

__all__ = ["OpenI", "OpenIConfig"]
