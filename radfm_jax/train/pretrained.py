"""Start a run's image tower from another run's checkpoint (config.init): the tower is read
alone from the checkpoint's train state (nothing else is loaded) and put in place of the new
model's, parameter by parameter, with every mismatch named."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from radfm_jax.config.schema import ExperimentConfig, InitConfig
from radfm_jax.errors import CheckpointError, ConfigError
from radfm_jax.objectives import OBJECTIVES
from radfm_jax.train.checkpoint import make_manager
from radfm_jax.train.paths import workdir_path
from radfm_jax.train.workdir import read_config

Tower = dict[str, Any]


def _flatten(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """{key path: leaf}, keys as the tree has them (an unrolled stack's blocks are int keys in
    a model, str keys in a checkpoint: compare paths with _names)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, (*prefix, key)))
    return flat


def _names(keys: tuple) -> tuple[str, ...]:
    return tuple(str(key) for key in keys)


def _unflatten(flat: dict[tuple, Any]) -> dict:
    tree: dict = {}
    for keys, value in flat.items():
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree


def checkpoint_step(workdir: epath.Path, config: ExperimentConfig, step: int) -> int:
    """`step` (0 = the latest) of the workdir's checkpoints, checked to exist."""
    manager = make_manager(workdir, keep=config.keep_checkpoints)
    try:
        steps = sorted(manager.all_steps())
    finally:
        manager.close()
    if not steps:
        raise ConfigError(f"'{workdir}' has no checkpoints; train it first")
    step = step or steps[-1]
    if step not in steps:
        raise ConfigError(f"step {step}: '{workdir}' has checkpoints for steps {steps}")
    return step


def read_params(workdir: epath.Path, step: int, path: tuple[str, ...] = ()) -> Tower:
    """The parameters under params/<path> of the workdir's checkpoint at `step`, as NumPy arrays
    (nothing else is read)."""
    state_dir = workdir / "checkpoints" / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        stored = checkpointer.metadata(state_dir).item_metadata.tree
        subtree = stored["params"]
        for key in path:
            subtree = subtree[key]
        target = {"params": _nest(path, jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), subtree))}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
        restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
            item=target, restore_args=restore_args, partial_restore=True))
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"the checkpoint at {state_dir.parent} holds nothing at "
                              f"params/{'/'.join(path)} ({err})") from None
    except Exception as err:  # orbax raises many types for unreadable files
        raise CheckpointError(f"cannot read the parameters from {state_dir.parent} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); choose another step") from None
    finally:
        checkpointer.close()
    tree = restored["params"]
    for key in path:
        tree = tree[key]
    return tree


def load_pretrained_tower(init: InitConfig) -> tuple[Tower, str, ExperimentConfig]:
    """(the image tower's parameters as NumPy arrays, a description of where they came from,
    the config of the run that trained it)."""
    workdir = workdir_path(init.workdir)
    source = read_config(workdir)
    tower_path = OBJECTIVES[source.objective.name].image_tower_path
    try:
        step = checkpoint_step(workdir, source, init.step)
    except ConfigError as err:
        raise ConfigError(f"init.workdir / init.step: {err}") from None
    tower = read_params(workdir, step, tower_path)
    return tower, f"{workdir} step {step} ({source.objective.name}: params/{'/'.join(tower_path)})", source


def _int_keys(tree: Any) -> Any:
    """A checkpoint's tree with digit keys (unrolled blocks) as the ints a model uses."""
    if not isinstance(tree, dict):
        return tree
    return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v) for k, v in tree.items()}


def fit_tower(tower: Tower, source: ExperimentConfig, config: ExperimentConfig) -> Tower:
    """The pretrained image tower made to fit `config`'s: a 2D ViT inflated into a vit3d
    (config.init.inflate), a vit3d's position embedding resized to another volume size
    (ViT3D.adapt_pretrained); any other pair as it is, for graft_tower to match or refuse."""
    target = config.model.image.name
    if target != "vit3d" or source.model.image.name not in ("vit", "vit3d"):
        return tower
    from flax import nnx

    from radfm_jax.models.towers import build_image_tower
    from radfm_jax.models.vit3d import ViT3D, inflate_from_vit2d
    from radfm_jax.objectives.base import image_channels, image_shape

    shape = image_shape(config)
    if source.model.image.name == "vit3d":
        return ViT3D.adapt_pretrained(tower, config.model.image, shape)
    vit3d = build_image_tower(config.model, shape, nnx.Rngs(0), channels=image_channels(config))
    side = source.data.input_size // source.model.image.patch_size
    try:
        inflate_from_vit2d(nnx.State(_int_keys(tower)), vit3d, config.init.inflate, grid2d=(side, side))
    except ValueError as err:
        raise ConfigError(f"cannot inflate the 2D ViT of init.workdir into this vit3d: {err}; set model.image "
                          "(width, depth, heads, pool, the tubelet's (ph, pw)) and data.windows (one window "
                          "per 2D channel) to match the 2D run") from None
    return nnx.state(vit3d, nnx.Param).to_pure_dict()


def published_start(config: ExperimentConfig, image_tower_path: tuple[str, ...],
                    model_keys: set[str]) -> list[tuple[tuple[str, ...], Tower, str]]:
    """(where to graft, the parameters, their source) for config.init.weights and
    init.text_weights: the whole model when a two-tower checkpoint meets a two-tower objective,
    else the checkpoint's image tower (init.weights) and text tower (init.text_weights)."""
    from radfm_jax.objectives.base import image_channels
    from radfm_jax.weights.published import load_published

    def load(path: str) -> dict:
        return load_published(path, channels=image_channels(config), scan_layers=config.model.scan_layers,
                              max_text_len=config.data.max_text_len, input_size=config.data.input_size)

    init, grafts = config.init, []
    if init.weights:
        params = load(init.weights)
        if set(params) == model_keys:
            grafts.append(((), params, init.weights))
        elif "image" in params:
            grafts.append((image_tower_path, params["image"], f"{init.weights} (its image tower)"))
        else:
            raise ConfigError(f"init.weights: {init.weights} holds no image tower; a text encoder goes in "
                              "init.text_weights (radfm train --text-weights)")
    if init.text_weights:
        params = load(init.text_weights)
        if "text" not in params:
            raise ConfigError(f"init.text_weights: {init.text_weights} holds no text tower")
        if "text" not in model_keys:
            raise ConfigError(f"init.text_weights: objective.name='{config.objective.name}' trains no text tower")
        grafts.append((("text",), params["text"], f"{init.text_weights} (its text tower)"))
    return grafts


def _nest(path: tuple[str, ...], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def graft_tower(params: Tower, tower_path: tuple[str, ...], pretrained: Tower, source: str) -> Tower:
    """`params` with a tower's (at `tower_path`: the image tower's, ("text",), or () for the
    whole model) parameters replaced by `pretrained`'s (same names and shapes). Parameters the
    new tower has and the pretrained one lacks are allowed only when they are added on top of it
    (low-rank adapters); anything else is a ConfigError listing the mismatches."""
    tower = params
    for key in tower_path:
        tower = tower[key]
    wanted = _flatten(tower)
    given = {_names(keys): value for keys, value in _flatten(pretrained).items()}
    names = {keys: _names(keys) for keys in wanted}
    problems = [f"{'/'.join(names[keys])}: pretrained {np.shape(given[names[keys]])}, this config needs "
                f"{np.shape(value)}" for keys, value in wanted.items()
                if names[keys] in given and np.shape(given[names[keys]]) != np.shape(value)]
    problems += [f"{'/'.join(keys)}: in the pretrained tower, not in this config's" for keys in given
                 if keys not in set(names.values())]
    problems += [f"{'/'.join(names[keys])}: not in the pretrained tower" for keys in wanted
                 if names[keys] not in given and "lora" not in names[keys]]
    if problems:
        listing = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        text = tower_path == ("text",)
        what, field = ("the model", "model") if not tower_path else (
            ("the text tower", "model.text") if text else ("the image tower", "model.image"))
        hint = "Set model.image (and model.scan_layers) as in the pretraining run"
        if not tower_path or text:
            hint = (f"Set {'model.text' if text else 'model.image, model.text, model.embed_dim, data.input_size'} "
                    "and data.max_text_len as `radfm weights import` sets them (and model.scan_layers), and "
                    "data.tokenizer_file to the checkpoint's tokenizer.json (its vocabulary sizes the text embedding)")
        raise ConfigError(f"{what} of {source} does not match this config's {field}:\n  {listing}\n{hint}")
    merged = _unflatten({keys: given.get(names[keys], value) for keys, value in wanted.items()})
    if not tower_path:
        return merged
    new = dict(params)
    node = new
    for key in tower_path[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    node[tower_path[-1]] = merged
    return new
