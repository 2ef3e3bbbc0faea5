"""User-facing error types the CLI reports as one line (kept import-light for fast errors)."""

from radfm_jax.config.overrides import ConfigError


class CheckpointError(ConfigError):
    """A checkpoint that cannot be restored (corrupt, or from another model)."""
