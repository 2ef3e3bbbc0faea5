"""Pseudonymous keys: raw patient and study ids become keyed hashes before anything is written.

The secret key lives outside every data folder, so sharing prepared data never shares it:
`data.pseudonym_key` if set, else $RADFM_PSEUDONYM_KEY, else
$XDG_CONFIG_HOME/radfm_jax/pseudonym_key (XDG_CONFIG_HOME defaults to ~/.config). It is created
once (mode 0600, in a new folder of mode 0700) and then reused, so pseudonyms are stable across
builds and data sets; a key file that group or others can read or write, an empty one, or one
inside the data folder is refused. Losing the key changes every pseudonym of the next build.

Records never hold a raw identifier: `patient_id` / `study_id` are pseudonyms, and
`pseudonymous_source_path` replaces every identifying part of a file's path (see its docstring).
With the key, `SourceFiles` maps a stored source_path back to the file in the manual folder.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import secrets
import shlex
import stat
import tempfile
from pathlib import Path, PurePosixPath

from radfm_jax.data.privacy import pseudonymous_id
from radfm_jax.errors import ConfigError

KEY_ENV = "RADFM_PSEUDONYM_KEY"
KEY_FILENAME = "pseudonym_key"
CONFIG_FOLDER = "radfm_jax"  # under $XDG_CONFIG_HOME
# Where the key was kept before it moved out of the data folder (radfm_jax <= this change).
LEGACY_SALT_FILENAME = ".radfm_pseudonym_salt"
SOURCE_PATH_KIND = "source-path"  # the Pseudonymizer kind of a source path's parts
# A file name's extension, kept in a pseudonymous path: ".nii.gz", or one dot and a short
# alphanumeric word starting with a letter (".jpg", ".dcm"; not the ".878027" inside a UID).
_EXTENSION = re.compile(r"(\.nii\.gz|\.[A-Za-z][A-Za-z0-9]{0,4})$")


def default_key_path() -> Path:
    """$XDG_CONFIG_HOME/radfm_jax/pseudonym_key; XDG_CONFIG_HOME unset (or, as the XDG spec
    says, relative) means ~/.config."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path("~/.config").expanduser()
    return root / CONFIG_FOLDER / KEY_FILENAME


def resolve_key_path(configured: str | os.PathLike = "") -> Path:
    """The key file: `configured` (data.pseudonym_key) if set, else $RADFM_PSEUDONYM_KEY, else
    default_key_path(); `~` expanded, made absolute."""
    raw = os.fspath(configured) or os.environ.get(KEY_ENV, "")
    path = Path(raw).expanduser() if raw else default_key_path()
    return path.absolute()


def load_or_create_key(data_dir: str | os.PathLike, configured: str | os.PathLike = "") -> str:
    """The secret pseudonym key for builds into data_dir: read from resolve_key_path(configured),
    or created there (mode 0600) when absent. ConfigError for a key inside data_dir, a key file
    group or others can access, an empty key, or a legacy key left in data_dir (see
    _check_legacy_salt)."""
    path = resolve_key_path(configured)
    data = Path(data_dir).expanduser().absolute()
    _refuse_inside(path, data)
    _check_legacy_salt(data / LEGACY_SALT_FILENAME, path)
    if not path.exists() and not path.is_symlink():
        _create_key(path)
    return read_key(path)


def read_key(path: str | os.PathLike) -> str:
    """The key in `path`, after checking that only its owner can read or write it."""
    path = Path(path)
    fix = _how_to_set()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"the pseudonym key '{path}' does not exist (a dangling link?); {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the pseudonym key '{path}' is not a file; {fix}")
    if os.name == "posix" and info.st_mode & 0o066:
        raise ConfigError(
            f"the pseudonym key '{path}' can be read or written by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):03o}); anyone who reads it can re-link pseudonyms to "
            f"patients. Make it private: chmod 600 {shlex.quote(str(path))}")
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"cannot read the pseudonym key '{path}' ({err.strerror}); {fix}") from None
    if not key:
        raise ConfigError(
            f"the pseudonym key '{path}' is empty; restore it from your backup, or delete it to "
            "create a new one (every pseudonymous id of data built afterwards will change)")
    return key


@dataclasses.dataclass(frozen=True)
class Pseudonymizer:
    """Keyed, stable pseudonyms of raw identifiers; `kind` keeps patient and study ids apart."""

    salt: str

    def __call__(self, kind: str, raw: str) -> str:
        return pseudonymous_id(f"{kind}:{raw}", self.salt)


def pseudonymous_source_path(relative: str, ids: Pseudonymizer, keep: tuple[str, ...] = ()) -> str:
    """The path stored in a record's `source_path` for the file at `relative` (POSIX, relative
    to the manual folder): the leading folders named in `keep` (the release's own layout, e.g.
    "files" or "stage_2_train_images", which identify no one) stay as they are; from the first
    other part on, every folder and the file name become their pseudonym (16 hex digits), the
    file's extension kept. So "files/p10/p10000032/s50414267/abc.jpg" is stored as
    "files/<16 hex>/<16 hex>/<16 hex>/<16 hex>.jpg": no patient, study or image id survives,
    and the key maps it back (SourceFiles)."""
    parts = PurePosixPath(relative).parts
    kept = 0
    while kept < len(parts) - 1 and parts[kept] in keep:
        kept += 1
    hidden = [_part_pseudonym(part, ids, is_file=i == len(parts) - 1)
              for i, part in enumerate(parts) if i >= kept]
    return "/".join((*parts[:kept], *hidden))


def _part_pseudonym(part: str, ids: Pseudonymizer, *, is_file: bool) -> str:
    match = _EXTENSION.search(part) if is_file else None
    extension = match.group(1) if match and match.start() > 0 else ""
    stem = part[: len(part) - len(extension)]
    return ids(SOURCE_PATH_KIND, stem) + extension


class SourceFiles:
    """Maps stored source_paths back to the files of a manual folder, with the key they were
    built with (whoever lacks the key cannot):

        files = SourceFiles("/data/mimic-cxr-jpg", load_or_create_key(data_dir))
        files(record["source_path"].decode())  # -> Path of the real file

    Each lookup walks the stored path's folders, hashing the names of each folder's entries
    once (cached), so mapping every record of a data set costs one listing of the folders its
    files are in. FileNotFoundError when no file of the folder has that stored path."""

    def __init__(self, manual_dir: str | os.PathLike, key: str):
        self.root = Path(manual_dir)
        self._ids = Pseudonymizer(key)
        self._listings: dict[tuple[Path, bool], dict[str, str]] = {}

    def __call__(self, stored: str) -> Path:
        parts = PurePosixPath(stored).parts
        current = self.root
        for i, part in enumerate(parts):
            is_file = i == len(parts) - 1
            if (current / part).exists():  # a kept layout folder (or the file's own name)
                current = current / part
                continue
            name = self._listing(current, is_file).get(part)
            if name is None:
                raise FileNotFoundError(
                    f"no file of '{self.root}' has the stored source path '{stored}' (is this the "
                    "manual folder the data set was built from, and the key it was built with?)")
            current = current / name
        return current

    def _listing(self, folder: Path, is_file: bool) -> dict[str, str]:
        """{pseudonym: entry name} of a folder's entries."""
        cached = self._listings.get((folder, is_file))
        if cached is None:
            names = sorted(os.listdir(folder)) if folder.is_dir() else []
            cached = {_part_pseudonym(n, self._ids, is_file=is_file): n for n in names}
            self._listings[(folder, is_file)] = cached
        return cached


# -- checks ---------------------------------------------------------------------------------


def _how_to_set() -> str:
    return (f"set data.pseudonym_key (or {KEY_ENV}) to your key file, or leave both unset for "
            f"{default_key_path()}")


def _refuse_inside(path: Path, data: Path) -> None:
    real_path, real_data = Path(os.path.realpath(path)), Path(os.path.realpath(data))
    if path.is_relative_to(data) or real_path.is_relative_to(real_data):
        raise ConfigError(
            f"the pseudonym key '{path}' is inside the data folder '{data}', so sharing the data "
            f"would share the key; keep it elsewhere: {_how_to_set()}")


def _check_legacy_salt(legacy: Path, path: Path) -> None:
    """A key that older builds left in the data folder. It is never used from there (sharing
    the data shares it) and never silently replaced by a new key (every pseudonym would change):
    the error says how to move it to `path`, or that it is a copy of `path` to delete."""
    if not legacy.exists():
        return
    old, new = shlex.quote(str(legacy)), shlex.quote(str(path))
    if not path.exists():
        raise ConfigError(
            f"found the pseudonym key of earlier builds inside the data folder ('{legacy}'), "
            f"where sharing the data shares it; keys now live outside it, at '{path}'. Move it "
            f"there so new builds keep the same pseudonyms: mkdir -p -m 700 "
            f"{shlex.quote(str(path.parent))} && mv {old} {new} && chmod 600 {new} (a new key "
            "would change every pseudonymous id, so none is created while the old one is there)")
    try:
        same = legacy.read_text(encoding="utf-8").strip() == path.read_text(encoding="utf-8").strip()
    except OSError:
        same = False
    if same:
        raise ConfigError(
            f"a copy of the pseudonym key '{path}' is still inside the data folder ('{legacy}'), "
            f"where sharing the data shares it; delete it: rm {old}")
    raise ConfigError(
        f"the data folder holds the pseudonym key of earlier builds ('{legacy}'), which differs "
        f"from the key '{path}'; sharing the data would share it, and builds here would mix two "
        f"keys' pseudonyms. Keep the old key (mv {old} {new}, replacing the new one and the "
        f"pseudonyms made with it) or drop it and rebuild the older data sets (rm {old})")


def _create_key(path: Path) -> None:
    """A new random key at `path`, mode 0600 (a new parent folder gets 0700); atomic, so a
    concurrent build never reads a half-written key and two builds never make two keys."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise ConfigError(f"cannot create the folder '{parent}' for the pseudonym key "
                              f"({err.strerror}); {_how_to_set()}") from None
    key = secrets.token_hex(32) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.")  # mode 0600
    except OSError as err:
        raise ConfigError(f"cannot write the pseudonym key in '{parent}' ({err.strerror}); "
                          f"{_how_to_set()}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another build created the key meanwhile: keep theirs
        except FileExistsError:
            pass
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            _create_exclusive(path, key)  # a file system without hard links
    finally:
        os.unlink(tmp)


def _create_exclusive(path: Path, key: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
