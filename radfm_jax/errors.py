"""The user-facing errors: a user's mistake, or a fault the run cannot recover from by itself,
gets one of these, and the CLI prints its message as one line with a non-zero exit, no
traceback. Import them from here only (kept import-light so errors surface fast)."""


class RadfmError(Exception):
    """Anything the `radfm` command reports as one line (the base of the errors below)."""


class ConfigError(RadfmError, ValueError):
    """A user's mistake in a config, an override, a data folder or a workdir."""


class CheckpointError(ConfigError):
    """A checkpoint that cannot be restored (corrupt, or from another model)."""


class NonFiniteError(RadfmError):
    """Training produced a non-finite loss or parameters; nothing after the last good
    checkpoint was saved."""


class DiskFullError(RadfmError):
    """A write under the workdir (or data folder) ran out of space; what was saved before
    is intact."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are unreadable or whose arrays fail their checksums."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class DataError(ConfigError):
    """A prepared data set that cannot be read as built (a damaged or missing shard file); the
    message names the file and the command that rebuilds the data set."""
