"""WORKDIR bookkeeping: the resolved config, and refusing to mix experiments in one folder."""

from __future__ import annotations

import json
import time

from etils import epath

from radfm_jax.config.overrides import field_paths, from_dict, to_dict
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.train.paths import workdir_path
from radfm_jax.train.workdir_lock import is_lock_file

CONFIG_FILE = "config.json"


def config_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    old_fields, new_fields = field_paths(old), field_paths(new)
    return [f"{key}: {old_fields[key]!r} -> {new_fields[key]!r}" for key in new_fields if old_fields.get(key) != new_fields[key]]


def read_config(workdir: epath.PathLike) -> ExperimentConfig:
    path = workdir_path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: '{workdir}' is not a radfm workdir (train into it first)")
    try:
        return from_dict(ExperimentConfig, json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise ConfigError(f"{path} is not a valid radfm config ({err}); restore it or use a new workdir") from None


def check_workdir(workdir: epath.PathLike, config: ExperimentConfig, *, allow_config_change: bool) -> bool:
    """Refuse a workdir that holds something else; returns whether config.json must be written.

    Read-only, so a run can fail on its data or model before it has touched the workdir.
    """
    workdir = workdir_path(workdir)
    path = workdir / CONFIG_FILE
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir '{workdir}' exists and is not a directory; choose another path")
    if path.is_file():
        differences = config_differences(read_config(workdir), config)
        if differences and not allow_config_change:
            listing = "\n  ".join(differences[:10])
            raise ConfigError(
                f"workdir '{workdir}' holds a run of a different config:\n  {listing}\n"
                "Use a new --workdir, or pass --allow-config-change to continue this run with the "
                "new config (the old config.json is kept beside it)"
            )
        return bool(differences)
    if workdir.is_dir() and any(not is_lock_file(p.name) for p in workdir.iterdir()):
        raise ConfigError(
            f"workdir '{workdir}' is not empty and has no {CONFIG_FILE}; choose an empty or new folder"
        )
    return True


def claim_workdir(workdir: epath.PathLike, config: ExperimentConfig, *, allow_config_change: bool) -> None:
    """Write config.json after check_workdir; a replaced config is kept as config.<time>.json."""
    workdir = workdir_path(workdir)
    if not check_workdir(workdir, config, allow_config_change=allow_config_change):
        return
    path = workdir / CONFIG_FILE
    try:
        if path.is_file():
            path.rename(workdir / f"config.{time.strftime('%Y%m%d-%H%M%S')}.json")
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_dict(config), indent=2) + "\n")
    except OSError as err:
        raise ConfigError(f"cannot write the workdir '{workdir}' ({err.strerror}); choose a folder you can write to") from None
