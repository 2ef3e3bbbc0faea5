"""mimic_cxr: MIMIC-CXR-JPG images with MIMIC-CXR reports and CheXpert / NegBio labels."""

from radfm_jax.data.builders.mimic_cxr.builder import MimicCxr, MimicCxrConfig

__all__ = ["MimicCxr", "MimicCxrConfig"]
