"""Command-line overrides (`--set model.width=256`) applied to a typed config, with errors
that name the misspelt key and the nearest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, Iterable, TypeVar

from radfm_jax.errors import ConfigError

C = TypeVar("C")


def field_paths(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of a nested dataclass as {"a.b.c": value}."""
    paths: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        path = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            paths.update(field_paths(value, path + "."))
        else:
            paths[path] = value
    return paths


def _nearest(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return close[0] if close else candidates[0]


def _unknown_key_error(key: str, config: Any) -> ConfigError:
    valid = list(field_paths(config))
    # Compare against full paths and against leaf names so "totl_steps" finds "total_steps"
    # and "model.widht" finds "model.image.width" style keys alike.
    nearest = _nearest(key, valid)
    return ConfigError(f"unknown config key '{key}'; did you mean '{nearest}'?")


def _field_type(owner: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _coerce(raw: str, annotation: Any, key: str) -> Any:
    """Parse a command-line string into the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if raw not in choices:
            raise ConfigError(f"'{key}' must be one of {list(choices)}, got '{raw}'")
        return raw
    if origin in (tuple, list):
        (item_type, *_rest) = typing.get_args(annotation) or (str,)
        try:
            items = json.loads(raw)
        except json.JSONDecodeError:
            items = [part for part in raw.split(",") if part]
        if not isinstance(items, list):
            items = [items]
        return tuple(_coerce(str(item), item_type, key) for item in items)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"'{key}' has a union type; set it in the experiment file")
    try:
        if annotation is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
        if annotation is str:
            return raw
    except ValueError:
        raise ConfigError(
            f"'{key}' expects {annotation.__name__}, got '{raw}'"
        ) from None
    raise ConfigError(f"'{key}' cannot be set from the command line")


def set_path(config: C, key: str, raw: str) -> C:
    """Return a copy of `config` with the dotted field `key` parsed from `raw`."""
    return _set(config, key.split("."), raw, key, config)


def _set(node: Any, names: list[str], raw: str, key: str, root: Any) -> Any:
    head, *rest = names
    if not dataclasses.is_dataclass(node) or head not in {f.name for f in dataclasses.fields(node)}:
        raise _unknown_key_error(key, root)
    current = getattr(node, head)
    if rest:
        return dataclasses.replace(node, **{head: _set(current, rest, raw, key, root)})
    if dataclasses.is_dataclass(current):
        example = dataclasses.fields(current)[0].name
        raise ConfigError(f"'{key}' is a group; set one of its fields, e.g. '{key}.{example}'")
    return dataclasses.replace(node, **{head: _coerce(raw, _field_type(node, head), key)})


def apply_overrides(config: C, overrides: Iterable[str]) -> C:
    """Apply `key=value` strings in order."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not of the form key=value")
        config = set_path(config, key.strip(), raw.strip())
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a nested frozen dataclass from `to_dict` output (e.g. a workdir's config.json)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        field_type = hints[field.name]
        if dataclasses.is_dataclass(field_type):
            value = from_dict(field_type, value)
        elif typing.get_origin(field_type) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)
