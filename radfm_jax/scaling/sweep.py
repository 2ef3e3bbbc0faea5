"""Scaling sweeps as data: a Sweep is a named list of SweepPoints, each an ordinary experiment
config plus what the fits need (parameters, training patients, steps, FLOPs per step) and the
`--set` overrides that make it from the sweep's base experiment. A sweep file
`experiments/scaling/<name>.py` exposes `get_sweep(arg: str = "") -> Sweep`."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from radfm_jax.config import presets
from radfm_jax.config.loading import call_spec_file, validate
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.objectives import make_objective

# A point's name is its workdir's name: no path separators, no leading dot or underscore (the
# runner keeps its markers in ROOT/_status).
_POINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    name: str
    config: ExperimentConfig
    params: int  # parameters of the model config builds (all towers)
    data_size: int  # training patients (data.train_patients; 0 = the whole training split)
    steps: int
    flops_per_step: float  # analytic model FLOPs of one train step (train/flops.py)
    overrides: tuple[str, ...]  # `--set` items that make `config` from the sweep's base experiment


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    points: tuple[SweepPoint, ...]
    # The base experiment `experiments/<study>/<name>.py[:arg]` every point's overrides apply
    # to: what `radfm train --config` gets when points run elsewhere (emit_tpu_commands).
    base_spec: str = ""

    def __post_init__(self):
        names = [point.name for point in self.points]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"sweep '{self.name}' has several points named {duplicates}; give them distinct names")
        bad = [name for name in names if not _POINT_NAME.fullmatch(name)]
        if bad:
            raise ConfigError(f"sweep point names {bad} are not usable as folder names; use letters, digits "
                              "and . _ + - (not first)")


def param_count(config: ExperimentConfig, vocab_size: int) -> int:
    """Parameters of the model `config` trains, from its abstract shapes (nothing allocated)."""
    model = nnx.eval_shape(make_objective(config, vocab_size).model_factory())
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def model_flops_per_step(config: ExperimentConfig, vocab_size: int) -> float:
    return make_objective(config, vocab_size).flops().model


def model_size_overrides(size: str | Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(name, overrides) of a model size: a ladder name ("S") sets width / depth / heads of both
    towers; a mapping gives dotted config keys ({"model.image.depth": 2, ...}) and may name
    itself with "name" (else the point is named by its parameter count)."""
    if isinstance(size, str):
        ladder = {entry.name: entry for entry in presets.ladder()}
        if size not in ladder:
            raise ConfigError(f"unknown model size '{size}'; ladder sizes: {', '.join(ladder)} "
                              "(or a dict of model.* overrides)")
        entry = ladder[size]
        return size, tuple(f"model.{tower}.{field}={getattr(entry, field)}"
                           for tower in ("image", "text") for field in ("width", "depth", "heads"))
    name = size.get("name")
    overrides = tuple(f"{key}={_override_value(value)}" for key, value in size.items() if key != "name")
    if not overrides:
        raise ConfigError(f"model size {dict(size)} sets nothing; give dotted config keys, e.g. model.image.width")
    return name, overrides


def _override_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(item) for item in value)
    return str(value)


def _readable_count(n: float) -> str:
    """1234567 -> '1.2M': short parameter counts and budgets for point names."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _point(base: ExperimentConfig, base_overrides: Sequence[str], name: str, own: Sequence[str], params: int,
           vocab_size: int) -> SweepPoint:
    config = _validated(apply_overrides(base, own))
    return SweepPoint(
        name=name, config=config, params=params, data_size=config.data.train_patients,
        steps=config.total_steps, flops_per_step=model_flops_per_step(config, vocab_size),
        overrides=tuple(base_overrides) + tuple(own),
    )


def _sized_models(base: ExperimentConfig, model_sizes: Sequence[str | Mapping[str, Any]],
                  vocab_size: int) -> list[tuple[str, tuple[str, ...], int]]:
    """(name, overrides, params) per model size; unnamed sizes are named by their parameters."""
    if not model_sizes:
        raise ConfigError("model_sizes is empty; give ladder names (e.g. 'XXS', 'S') or dicts of model overrides")
    sized = []
    for size in model_sizes:
        name, overrides = model_size_overrides(size)
        params = param_count(_validated(apply_overrides(base, overrides)), vocab_size)
        sized.append((name or _readable_count(params), overrides, params))
    return sized


def _validated(config: ExperimentConfig) -> ExperimentConfig:
    validate(config)
    return config


def grid(base_config: ExperimentConfig, *, model_sizes: Sequence[str | Mapping[str, Any]],
         data_patients: Sequence[int], steps: Sequence[int], vocab_size: int, name: str = "grid",
         base_spec: str = "", base_overrides: Sequence[str] = ()) -> Sweep:
    """Every combination of model size x training patients (0 = all) x steps, named like
    `m-S__d-2000__s-1000`. `base_spec` and `base_overrides` say how `base_config` was made
    (load_experiment(base_spec, base_overrides)), so each point can run as a `radfm train`
    command; leave them empty for sweeps that only run here."""
    for label, values in (("data_patients", data_patients), ("steps", steps)):
        if not values:
            raise ConfigError(f"{label} is empty; give at least one value")
    points = []
    for (model, model_overrides, params), patients, total in itertools.product(
            _sized_models(base_config, model_sizes, vocab_size), data_patients, steps):
        data = "all" if patients == 0 else str(patients)
        own = (*model_overrides, f"data.train_patients={patients}", f"total_steps={total}")
        points.append(_point(base_config, base_overrides, f"m-{model}__d-{data}__s-{total}", own, params, vocab_size))
    return Sweep(name, tuple(points), base_spec)


def isoflop(base_config: ExperimentConfig, *, budgets: Sequence[float], model_sizes: Sequence[str | Mapping[str, Any]],
            vocab_size: int, min_steps: int = 10, name: str = "isoflop", base_spec: str = "",
            base_overrides: Sequence[str] = ()) -> Sweep:
    """For each FLOPs budget and model size the steps that spend it (round(budget / FLOPs per
    step), analytic model FLOPs); sizes that get fewer than `min_steps` steps are left out.
    Points are named like `f-1e15__m-S`; base_spec / base_overrides as in `grid`."""
    if not budgets:
        raise ConfigError("budgets is empty; give at least one FLOPs budget")
    points = []
    for budget, (model, model_overrides, params) in itertools.product(budgets, _sized_models(base_config, model_sizes, vocab_size)):
        if not (math.isfinite(budget) and budget > 0):
            raise ConfigError(f"FLOPs budget {budget} must be a positive number")
        per_step = model_flops_per_step(apply_overrides(base_config, model_overrides), vocab_size)
        total = round(budget / per_step)
        if total < min_steps:
            continue
        own = (*model_overrides, f"total_steps={total}")
        point_name = f"f-{budget:.3g}__m-{model}".replace("+", "")  # 1e+15 -> 1e15
        points.append(_point(base_config, base_overrides, point_name, own, params, vocab_size))
    if not points:
        raise ConfigError(f"every point of the budgets {list(budgets)} has fewer than min_steps={min_steps} "
                          "steps; raise the budgets or lower min_steps")
    return Sweep(name, tuple(points), base_spec)


def load_sweep(spec: str) -> Sweep:
    """`experiments/scaling/<name>.py[:arg]` -> its get_sweep(arg)."""
    return call_spec_file(spec, "get_sweep", Sweep, "sweep", "experiments/scaling/synthetic_cxr_demo.py")
