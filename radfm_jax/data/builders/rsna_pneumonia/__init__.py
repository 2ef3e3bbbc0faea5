"""rsna_pneumonia: the RSNA Pneumonia Detection Challenge (Kaggle) from the user's copy."""

from radfm_jax.data.builders.rsna_pneumonia.builder import RSNA_FINDINGS, RsnaPneumonia, RsnaPneumoniaConfig

__all__ = ["RSNA_FINDINGS", "RsnaPneumonia", "RsnaPneumoniaConfig"]
