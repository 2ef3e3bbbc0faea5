"""siim_acr_pneumothorax: SIIM-ACR Pneumothorax Segmentation from the user's copy."""

from radfm_jax.data.builders.siim_acr_pneumothorax.builder import (
    SIIM_FINDINGS,
    SiimAcrPneumothorax,
    SiimAcrPneumothoraxConfig,
)

__all__ = ["SIIM_FINDINGS", "SiimAcrPneumothorax", "SiimAcrPneumothoraxConfig"]
