"""The user-facing errors: a user's mistake gets one of these, and the CLI prints its message as
one line with a non-zero exit, no traceback. Import them from here only (kept import-light so
errors surface fast)."""


class ConfigError(ValueError):
    """A user's mistake in a config, an override, a data folder or a workdir."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be restored (corrupt, or from another model)."""
