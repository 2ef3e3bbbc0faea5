"""nih_cxr14: NIH ChestX-ray14 from the user's copy (images + its own 14 findings, no reports);
nih_cxr14_expert: its images relabelled by radiologists for four findings (Google, 2019)."""

from radfm_jax.data.builders.nih_cxr14.builder import NIH_FINDINGS, NihCxr14, NihCxr14Config
from radfm_jax.data.builders.nih_cxr14.expert import EXPERT_FINDINGS, NihCxr14Expert, NihCxr14ExpertConfig

__all__ = ["EXPERT_FINDINGS", "NIH_FINDINGS", "NihCxr14", "NihCxr14Config", "NihCxr14Expert",
           "NihCxr14ExpertConfig"]
