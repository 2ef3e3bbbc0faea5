"""nih_cxr14: NIH ChestX-ray14 from the user's copy (images + its own 14 findings, no reports)."""

from radfm_jax.data.builders.nih_cxr14.builder import NIH_FINDINGS, NihCxr14, NihCxr14Config

__all__ = ["NIH_FINDINGS", "NihCxr14", "NihCxr14Config"]
