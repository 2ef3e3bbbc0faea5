"""The train state: a pure pytree (step, params as a nested dict, optimizer state, the
objective's extra state) created already sharded on the mesh by a jitted initialiser with
explicit output shardings."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx, traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.parallel import rules as sharding_rules


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # optimizer updates completed
    params: dict[str, Any]
    opt_state: optax.OptState
    # The objective's own state besides the parameters (an EMA teacher, a centre; {} for most):
    # Objective.init_extra / update_extra.
    extra: Any = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the step builder needs to rebuild the model from a params dict inside jit."""

    graphdef: nnx.GraphDef
    abstract_state: nnx.State  # the Param state's structure and metadata, no values

    def merge(self, params: dict[str, Any]) -> nnx.Module:
        state = jax.tree.map(lambda x: x, self.abstract_state)  # fresh copy to fill
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)


def split_abstract_model(model_factory: Callable[[], nnx.Module]) -> tuple[ModelSpec, dict, dict]:
    """Shapes, graph and logical axis names of a model without allocating it."""
    abstract_model = nnx.eval_shape(model_factory)
    graphdef, state = nnx.split(abstract_model, nnx.Param)
    names = {}
    for path, variable in nnx.to_flat_state(state):
        axes = variable.get_metadata().get("out_sharding")
        if axes is None:
            raise ValueError(f"parameter {'/'.join(map(str, path))} has no logical axis names")
        names[tuple(path)] = tuple(axes)
    abstract_params = nnx.to_pure_dict(state)
    return ModelSpec(graphdef, state), abstract_params, traverse_util.unflatten_dict(names)


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Abstract train state and its shardings, computed once and shared by init, step,
    checkpoint restore and AOT compilation."""

    model: ModelSpec
    abstract: TrainState
    shardings: TrainState
    param_lines: list[str]
    replicated_fraction: float


def plan_state(
    model_factory: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    preset: str,
    init_extra: Callable[[Any], Any] = lambda params: {},
) -> StateLayout:
    """`init_extra(params)`: the objective's extra state (Objective.init_extra); its leaves
    whose path ends in a parameter's path (a teacher copy) are sharded like that parameter."""
    model_spec, abstract_params, logical_names = split_abstract_model(model_factory)
    rules = sharding_rules.PRESETS[preset]
    param_shardings = sharding_rules.param_shardings(abstract_params, logical_names, rules, mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    abstract_extra = jax.eval_shape(init_extra, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = _mirror_param_shardings(abstract_opt, abstract_params, param_shardings, replicated)
    extra_shardings = _mirror_param_shardings(abstract_extra, abstract_params, param_shardings, replicated)
    abstract = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params, opt_state=abstract_opt,
        extra=abstract_extra,
    )
    shardings = TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings,
                           extra=extra_shardings)
    fraction = sharding_rules.replicated_fraction(abstract_params, param_shardings)
    sharding_rules.check_sufficiently_sharded(preset, fraction, mesh)
    return StateLayout(
        model=model_spec,
        abstract=abstract,
        shardings=shardings,
        param_lines=sharding_rules.describe(abstract_params, param_shardings),
        replicated_fraction=fraction,
    )


def _path_keys(path) -> tuple[str, ...]:
    return tuple(str(getattr(key, "key", getattr(key, "name", key))) for key in path)


def _mirror_param_shardings(abstract_opt, abstract_params, param_shardings, replicated):
    """Optimizer leaves whose path ends in a parameter's path (Adam moments) take that
    parameter's sharding; everything else (counters) replicates."""
    by_path = {
        _path_keys(path): (leaf.shape, sharding)
        for (path, leaf), sharding in zip(
            jax.tree_util.tree_flatten_with_path(abstract_params)[0], jax.tree.leaves(param_shardings)
        )
    }
    depth = max(len(path) for path in by_path)

    def choose(path, leaf):
        keys = _path_keys(path)
        for start in range(max(len(keys) - depth, 0), len(keys)):
            match = by_path.get(keys[start:])
            if match is not None and match[0] == leaf.shape:
                return match[1]
        return replicated

    return jax.tree_util.tree_map_with_path(choose, abstract_opt)


def init_train_state(
    layout: StateLayout,
    model_factory: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    init_extra: Callable[[Any], Any] = lambda params: {},
    replace_params: Callable[[Any, Any], Any] | None = None,
    replacement: Any = None,
) -> TrainState:
    """Initialise parameters, optimizer and extra state directly into their shardings.
    `replace_params(params, replacement)` puts given arrays (a pretrained tower) in place of
    freshly initialised ones before the optimizer and extra state are made from them."""

    def init(replacement: Any) -> TrainState:
        params = nnx.to_pure_dict(nnx.state(model_factory(), nnx.Param))
        if replace_params is not None:
            params = replace_params(params, replacement)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          extra=init_extra(params))

    return jax.jit(init, out_shardings=layout.shardings)(replacement)
