"""Load an experiment file `experiments/<study>/<name>.py[:arg]` into a typed config."""

from __future__ import annotations

import inspect
import runpy
from pathlib import Path

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError


def call_spec_file(spec: str, function: str, result_type: type, kind: str, example: str):
    """`path.py[:arg]` -> the file's `function(arg)`, checked to return a `result_type`; every
    problem (missing file or function, unknown variant, wrong type) is one ConfigError."""
    path_text, _, arg = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{kind} file '{path}' not found; pass e.g. {example}")
    fn = runpy.run_path(str(path)).get(function)
    if fn is None:
        raise ConfigError(f"'{path}' defines no {function}(arg: str = '') function")
    try:
        result = fn(arg) if inspect.signature(fn).parameters else fn()
    except ValueError as err:  # e.g. an unknown variant after ':'
        raise ConfigError(f"{function}({arg!r}) in '{path}' failed: {err}") from None
    if not isinstance(result, result_type):
        raise ConfigError(f"{function} in '{path}' must return a {result_type.__name__}, got {type(result).__name__}")
    return result


def load_experiment(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """`path.py:arg` -> get_config(arg) with overrides applied, validated."""
    config = call_spec_file(spec, "get_config", ExperimentConfig, "config", "experiments/synthetic_cxr/clip.py")
    config = apply_overrides(config, overrides)
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Cross-field checks a single field's type cannot express: the experiment's own, the data
    set's name (data/builders/registry.py), each tower's (models/towers.py) and the
    objective's (objectives/__init__.py)."""
    from radfm_jax.data.builders.registry import builder_class
    from radfm_jax.models.towers import IMAGE_TOWERS, PIXEL_DECODERS, REPORT_DECODERS, TEXT_TOWERS
    from radfm_jax.objectives import OBJECTIVES
    from radfm_jax.objectives.base import image_shape

    positive = {
        "total_steps": config.total_steps,
        "batch_size": config.batch_size,
        "log_every": config.log_every,
        "checkpoint_every": config.checkpoint_every,
        "keep_checkpoints": config.keep_checkpoints,
        "eval.batch_size": config.eval.batch_size,
        "data.max_text_len": config.data.max_text_len,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"'{key}' must be positive, got {value}")
    if config.eval_every < 0:
        raise ConfigError(f"'eval_every' must be >= 0 (0 = no evaluation), got {config.eval_every}")
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sum(size == -1 for size in sizes) > 1 or any(size == 0 or size < -1 for size in sizes):
        raise ConfigError(f"mesh sizes {sizes}: use positive sizes and at most one -1")
    builder_class(config.data.name)  # a registered data set
    if config.eval.prompt_sets:
        from radfm_jax.evals.prompt_sets import load_prompt_sets

        load_prompt_sets(config.eval.prompt_sets)  # a bad file fails before the data set is opened
    if config.init.workdir and not (Path(config.init.workdir) / "config.json").is_file():
        raise ConfigError(f"init.workdir '{config.init.workdir}' is not a radfm workdir (no config.json); "
                          "pass the folder a pretraining run wrote")
    model = config.model
    IMAGE_TOWERS[model.image.name].check(model.image, image_shape(config))
    TEXT_TOWERS[model.text.name].check(model.text)
    REPORT_DECODERS[model.decoder.name].check(model.decoder)
    PIXEL_DECODERS[model.mae_decoder.name].check(model.mae_decoder)
    OBJECTIVES[config.objective.name].check(config)
