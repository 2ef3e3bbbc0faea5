"""Load an experiment file `experiments/<study>/<name>.py[:arg]` into a typed config."""

from __future__ import annotations

import inspect
import runpy
import traceback
from pathlib import Path
from typing import Any

from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.ranges import check_ranges
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError


def call_spec_file(spec: str, function: str, result_type: type, kind: str, example: str):
    """`path.py[:arg]` -> the file's `function(arg)`, checked to return a `result_type`; every
    problem (missing file or function, a syntax error or exception in the file, an unknown
    variant, wrong type) is one ConfigError, naming the file's line for an error raised in it."""
    path_text, _, arg = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{kind} file '{path}' not found; pass e.g. {example}")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as err:  # a syntax error, a failed import, any error at the top level
        raise file_error(path, err) from err
    fn = namespace.get(function)
    if fn is None:
        raise ConfigError(f"'{path}' defines no {function}(arg: str = '') function")
    try:
        result = fn(arg) if inspect.signature(fn).parameters else fn()
    except Exception as err:  # e.g. an unknown variant after ':', a NameError, a misspelt key
        raise file_error(path, err) from err
    if not isinstance(result, result_type):
        raise ConfigError(f"{function} in '{path}' must return a {result_type.__name__}, got {type(result).__name__}")
    return result


def file_error(path: Path, err: BaseException) -> ConfigError:
    """One line for an error raised while running the file `path`: "path, line N: Type: message",
    N the line of `path` it came from (the innermost, when `path` calls code that raised); a
    ConfigError (already a user-facing message) keeps its class and reads "path, line N: message"."""
    if isinstance(err, SyntaxError) and _same_file(err.filename, path):
        line, message = err.lineno, err.msg
    else:
        lines = [lineno for frame, lineno in traceback.walk_tb(err.__traceback__)
                 if _same_file(frame.f_code.co_filename, path)]
        line, message = (lines[-1] if lines else None), str(err)
    message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    where = f"{path}, line {line}" if line else str(path)
    if isinstance(err, ConfigError):
        return type(err)(f"{where}: {message}")
    return ConfigError(f"{where}: {type(err).__name__}" + (f": {message}" if message else ""))


def _same_file(filename: Any, path: Path) -> bool:
    try:
        return bool(filename) and Path(filename).resolve() == path.resolve()
    except (OSError, ValueError):
        return False


def load_experiment(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """`path.py:arg` -> get_config(arg) with overrides applied, validated."""
    config = call_spec_file(spec, "get_config", ExperimentConfig, "config", "experiments/synthetic_cxr/clip.py")
    config = apply_overrides(config, overrides)
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Every numeric field's declared range (NaN and inf refused), then checks a single field
    cannot express: the experiment's own, the data set's name (data/builders/registry.py), each
    tower's (models/towers.py) and the objective's (objectives/__init__.py)."""
    from radfm_jax.data.builders.registry import builder_class
    from radfm_jax.models.towers import IMAGE_TOWERS, PIXEL_DECODERS, REPORT_DECODERS, TEXT_TOWERS
    from radfm_jax.objectives import OBJECTIVES
    from radfm_jax.objectives.base import image_shape

    check_ranges(config)  # every numeric field against the range it declares (config/ranges.py)
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sum(size == -1 for size in sizes) > 1:
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
