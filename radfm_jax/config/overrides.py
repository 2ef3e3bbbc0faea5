"""Command-line overrides (`--set model.width=256`) applied to a typed config, with errors
that name the misspelt key and the nearest valid one, and the JSON round trip of a config.

A field holding a plug-in config (an objective, a tower: a `Choice`, see schema.py) is switched
by its name: `--set objective.name=mae` replaces the objective config by MAE's with its own
defaults; `--set objective.mask_ratio=0.9` then sets MAE's field. A field that belongs to
another choice than the current one is refused with the choice that owns it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from radfm_jax.config.schema import Choice
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


def nearest(key: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return close[0] if close else candidates[0]


def _unknown_key_error(key: str, config: Any) -> ConfigError:
    # Compare against full paths so "totl_steps" finds "total_steps" and "model.widht" finds
    # "model.image.width" style keys alike.
    return ConfigError(f"unknown config key '{key}'; did you mean '{nearest(key, field_paths(config))}'?")


def _owner_error(key: str, node: Choice, field: str) -> ConfigError | None:
    """For a field that is not on the chosen config but on another choice of the same kind:
    the error naming the choice that owns it."""
    owners = [name for name, cls in type(node).choices().items()
              if field in {f.name for f in dataclasses.fields(cls)}]
    if not owners:
        return None
    prefix = key.rsplit(".", 1)[0]
    return ConfigError(
        f"'{key}' belongs to the {node.kind} {' / '.join(repr(o) for o in owners)}, but this config's "
        f"{node.kind} is '{node.name}'; set {prefix}.name={owners[0]} first, or drop the override"
    )


def _choose(node: Choice, raw: str, key: str) -> Choice:
    """The config of the choice named `raw`, with its defaults (a ConfigError if unknown)."""
    choices = type(node).choices()
    if raw not in choices:
        raise ConfigError(f"'{key}' must name a registered {node.kind}, one of {sorted(choices)}; "
                          f"got '{raw}' (did you mean '{nearest(raw, choices)}'?)")
    return node if raw == node.name else choices[raw]()


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
    if isinstance(node, Choice) and head == "name" and not rest:
        return _choose(node, raw, key)
    if not dataclasses.is_dataclass(node) or head not in {f.name for f in dataclasses.fields(node)}:
        owner = _owner_error(key, node, head) if isinstance(node, Choice) and not rest else None
        raise owner or _unknown_key_error(key, root)
    current = getattr(node, head)
    if rest:
        return dataclasses.replace(node, **{head: _set(current, rest, raw, key, root)})
    if dataclasses.is_dataclass(current):
        example = "name" if isinstance(current, Choice) else dataclasses.fields(current)[0].name
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


def with_fields(config: C, changes: Mapping[str, Any]) -> C:
    """A copy of `config` with dotted fields set to Python values, in order: how an experiment
    file states what differs from its base (`{"model.image.depth": 4, "objective": MaeConfig()}`).
    Unknown keys get the nearest valid key; values are checked against the field's type."""
    for key, value in changes.items():
        config = _replace(config, key.split("."), value, key, config)
    return config


def _replace(node: Any, names: list[str], value: Any, key: str, root: Any) -> Any:
    head, *rest = names
    if not dataclasses.is_dataclass(node) or head not in {f.name for f in dataclasses.fields(node) if f.init}:
        owner = _owner_error(key, node, head) if isinstance(node, Choice) and not rest else None
        raise owner or _unknown_key_error(key, root)
    if rest:
        return dataclasses.replace(node, **{head: _replace(getattr(node, head), rest, value, key, root)})
    _check_type(value, _field_type(node, head), key)
    return dataclasses.replace(node, **{head: value})


def _check_type(value: Any, annotation: Any, key: str) -> None:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        ok = value in typing.get_args(annotation)
    elif origin in (tuple, list):
        ok = isinstance(value, tuple)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(annotation, type):
        ok = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    else:
        ok = True
    if not ok:
        expected = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"'{key}' expects {expected}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Rebuild a nested frozen dataclass from `to_dict` output (e.g. a workdir's config.json).
    A plug-in config is rebuilt as the class its mapping lists under the stored `name`."""
    if isinstance(cls, type) and issubclass(cls, Choice):
        choices = cls.choices()
        name = data.get("name")
        if name not in choices:
            raise ConfigError(f"'{prefix}name' is '{name}', not a registered {cls.kind} "
                              f"({', '.join(sorted(choices))})")
        cls = choices[name]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data or not field.init:
            continue
        value = data[field.name]
        field_type = hints[field.name]
        if dataclasses.is_dataclass(field_type):
            value = from_dict(field_type, value, f"{prefix}{field.name}.")
        elif typing.get_origin(field_type) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)
