"""ct_rate: CT-RATE chest CT volumes with reports and 18 abnormality labels from the user's copy
of the Hugging Face release (first release or the HU re-release)."""

from radfm_jax.data.builders.ct_rate.builder import CtRate, CtRateConfig, volume_spec
from radfm_jax.data.builders.ct_rate.tables import LABEL_NAMES

__all__ = ["CtRate", "CtRateConfig", "LABEL_NAMES", "volume_spec"]
