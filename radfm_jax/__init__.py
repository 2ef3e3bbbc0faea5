"""radfm_jax: pretrain, adapt and evaluate radiology foundation models in JAX."""

__version__ = "0.1.0"
