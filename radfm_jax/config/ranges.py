"""Allowed ranges of numeric config fields, declared where each field is declared, and the one
walker that checks a loaded config against them.

A numeric field (int, float, or a tuple of them: each item is checked) states its range as its
default, e.g. `total_steps: int = positive(1000)`, `eval_every: int = non_negative(0, "0 = no
evaluation")`, `mask_ratio: float = ranged(0.75, gt=0, lt=1)`; the range lives in the field's
metadata under RANGE. `check_ranges(config)` (run by config/loading.validate) visits every field
of a config and of every dataclass it nests, plug-in configs included, and refuses NaN / inf in
any float and any value outside its field's range with one ConfigError naming the dotted field,
the value and the range. `declared_ranges(cls)` lists every numeric field a config class can hold
(every registered objective and tower included), so a test can insist each declares a range.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any

from radfm_jax.errors import ConfigError

RANGE = "radfm_range"  # the metadata key of a field's Range


@dataclasses.dataclass(frozen=True)
class Range:
    """low .. high (each end open or closed; infinite = unbounded), plus `also`: special values
    outside it (e.g. -1 = the remaining devices). `note` says what special values mean."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    also: tuple[float, ...] = ()
    note: str = ""

    def __contains__(self, value: float) -> bool:
        if value in self.also:
            return True
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low == 0 and self.low_open and self.high == math.inf:
            text = "positive"
        elif self.low == -math.inf and self.high == math.inf:
            text = "a finite number"
        elif self.high == math.inf:
            text = f"{'>' if self.low_open else '>='} {low}"
        elif self.low == -math.inf:
            text = f"{'<' if self.high_open else '<='} {high}"
        else:
            text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.also:
            text = " or ".join([*map(_number, self.also), text])
        return f"{text} ({self.note})" if self.note else text


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, also: tuple[float, ...] = (), note: str = "") -> Any:
    """A dataclass field with `default` whose values (each item, for a tuple) must be >= ge or
    > gt, and <= le or < lt, or one of `also`; no bound = only finite."""
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise TypeError("give at most one lower (ge / gt) and one upper (le / lt) bound")
    allowed = Range(
        low=gt if gt is not None else ge if ge is not None else -math.inf,
        high=lt if lt is not None else le if le is not None else math.inf,
        low_open=gt is not None, high_open=lt is not None, also=tuple(also), note=note,
    )
    return dataclasses.field(default=default, metadata={RANGE: allowed})


def positive(default: Any, note: str = "") -> Any:
    """> 0 (>= 1 for an int)."""
    return ranged(default, gt=0, note=note)


def non_negative(default: Any, note: str = "") -> Any:
    """>= 0; say in `note` what 0 means where it is special ("0 = off")."""
    return ranged(default, ge=0, note=note)


def finite(default: Any, note: str = "") -> Any:
    """Any finite number (NaN and inf are refused)."""
    return ranged(default, note=note)


def fraction(default: Any, note: str = "") -> Any:
    """In [0, 1]."""
    return ranged(default, ge=0, le=1, note=note)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_ranges(config: Any, prefix: str = "") -> None:
    """Raise a ConfigError for the first numeric field of `config` (or of a dataclass it nests)
    that is NaN / inf or outside its declared range."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, key + ".")
            continue
        allowed: Range | None = field.metadata.get(RANGE)
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if not _is_number(item):
                continue
            finite_item = math.isfinite(item)
            if finite_item and (allowed is None or item in allowed):
                continue
            wanted = str(allowed if allowed is not None else Range())
            if not finite_item and not wanted.startswith("a finite number"):
                wanted = f"finite and {wanted}"
            where = f"each item of '{key}'" if items is value else f"'{key}'"
            shown = f"{item!r} in {value!r}" if items is value else repr(item)
            raise ConfigError(f"{where} must be {wanted}, got {shown}")


def _is_numeric_type(hint: Any) -> bool:
    if hint in (int, float):
        return True
    if typing.get_origin(hint) in (tuple, list):
        args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        return bool(args) and all(arg in (int, float) for arg in args)
    return False


def declared_ranges(cls: type, prefix: str = "") -> dict[str, Range | None]:
    """Every numeric field (int, float, or a tuple of them) a config of class `cls` can hold, as
    {dotted key: its Range, or None where it declares none}. A plug-in field (a schema.Choice)
    is expanded into every registered choice, keyed `model.image(vit).width`."""
    from radfm_jax.config.schema import Choice

    hints = typing.get_type_hints(cls)
    found: dict[str, Range | None] = {}
    for field in dataclasses.fields(cls):
        hint, key = hints[field.name], f"{prefix}{field.name}"
        if isinstance(hint, type) and issubclass(hint, Choice):
            for name, choice in hint.choices().items():
                found.update(declared_ranges(choice, f"{key}({name})."))
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            found.update(declared_ranges(hint, key + "."))
        elif _is_numeric_type(hint):
            found[key] = field.metadata.get(RANGE)
    return found
