"""Pseudonymous keys: raw patient and study ids become salted hashes before anything is written,
with one secret salt per data folder so keys are stable across builds on that machine."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from radfm_jax.data.privacy import pseudonymous_id
from radfm_jax.errors import ConfigError

SALT_FILENAME = ".radfm_pseudonym_salt"


def load_or_create_salt(data_dir: str | os.PathLike) -> str:
    """The secret salt of this data folder: created once (mode 0600), then reused so keys are
    stable across builds. Deleting it changes every pseudonymous key on the next build."""
    path = Path(data_dir) / SALT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = path.read_text().strip()
        if not salt:
            raise ConfigError(f"the pseudonym salt file '{path}' is empty; delete it to create a "
                              "new one (pseudonymous ids of data built here will change)") from None
        return salt
    with os.fdopen(fd, "w") as handle:
        salt = secrets.token_hex(32)
        handle.write(salt + "\n")
    return salt


@dataclasses.dataclass(frozen=True)
class Pseudonymizer:
    """Salted, stable keys for raw identifiers; `kind` keeps patient and study ids apart."""

    salt: str

    def __call__(self, kind: str, raw: str) -> str:
        return pseudonymous_id(f"{kind}:{raw}", self.salt)
