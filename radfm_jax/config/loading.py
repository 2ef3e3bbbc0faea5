"""Load an experiment file `experiments/<study>/<name>.py[:arg]` into a typed config."""

from __future__ import annotations

import importlib.util
import inspect
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
    module_spec = importlib.util.spec_from_file_location(f"_radfm_{function}_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    fn = getattr(module, function, None)
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
    """Cross-field checks a single field's type cannot express."""
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
    image = config.model.image
    if config.data.input_size % image.patch_size:
        raise ConfigError(
            f"data.input_size={config.data.input_size} is not divisible by "
            f"model.image.patch_size={image.patch_size}"
        )
    towers = (("image", image), ("text", config.model.text), ("decoder", config.model.decoder),
              ("mae_decoder", config.model.mae_decoder))
    for tower, cfg in towers:
        if cfg.width % cfg.heads:
            raise ConfigError(f"model.{tower}.width={cfg.width} is not divisible by model.{tower}.heads={cfg.heads}")
    objective = config.objective
    if not 0.0 < objective.mask_ratio < 1.0:
        raise ConfigError(f"objective.mask_ratio must be in (0, 1), got {objective.mask_ratio}")
    if not 0.0 <= objective.parallel_fraction <= 1.0:
        raise ConfigError(f"objective.parallel_fraction must be in [0, 1], got {objective.parallel_fraction}")
    if not 0 <= config.model.decoder.unimodal_depth <= config.model.decoder.depth:
        raise ConfigError(
            f"model.decoder.unimodal_depth={config.model.decoder.unimodal_depth} must be between 0 "
            f"and model.decoder.depth={config.model.decoder.depth}"
        )
    if objective.name == "coca" and config.model.decoder.unimodal_depth == 0:
        raise ConfigError("objective.name=coca reads its text embedding from unimodal decoder blocks; "
                          "set model.decoder.unimodal_depth >= 1")
    if objective.name == "coca" and objective.parallel_fraction:
        raise ConfigError("objective.parallel_fraction (CapPa) applies to objective.name=caption; "
                          "CoCa's text embedding needs the causal inputs. Set it to 0")
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sum(size == -1 for size in sizes) > 1 or any(size == 0 or size < -1 for size in sizes):
        raise ConfigError(f"mesh sizes {sizes}: use positive sizes and at most one -1")
