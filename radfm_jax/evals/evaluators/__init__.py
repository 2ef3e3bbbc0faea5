"""The evaluators, by name (explicit mapping): each is built from the prepared data and the
model's named predict functions (evals/predictors.py) and is `params -> flat metrics dict`, the
keys `"<evaluator>/<metric>[/<class>]"`. They run inside training on padded, masked batches and
from `radfm eval`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.datasets import PreparedData
from radfm_jax.errors import ConfigError
from radfm_jax.evals.evaluators.generation import GenerationEvaluator
from radfm_jax.evals.evaluators.linear_probe import LinearProbeEvaluator
from radfm_jax.evals.evaluators.zeroshot_retrieval import ZeroshotRetrievalEvaluator
from radfm_jax.evals.predictors import Predictors

Evaluator = Callable[[dict], dict[str, float]]


def _zeroshot_retrieval(config, data, predictors, mesh, split) -> Evaluator:
    return ZeroshotRetrievalEvaluator(data.sources[split], data.tokenizer, data.label_names, predictors, mesh,
                                config.data, config.eval)


def _linear_probe(config, data, predictors, mesh, split) -> Evaluator:
    return LinearProbeEvaluator(data.sources["train"], data.sources[split], data.tokenizer, data.label_names,
                                predictors, mesh, config.data, config.eval)


def _generation(config, data, predictors, mesh, split) -> Evaluator:
    return GenerationEvaluator(data.sources[split], data.sources["train"], data.tokenizer, data.label_names,
                               predictors, mesh, config.data, config.eval, seed=config.seed)


EVALUATORS: dict[str, Callable[..., Evaluator]] = {
    "zeroshot_retrieval": _zeroshot_retrieval,
    "linear_probe": _linear_probe,
    "generation": _generation,
}

# The predict functions each evaluator needs.
_NEEDS = {"zeroshot_retrieval": ("encode_image", "encode_text"), "linear_probe": ("image_features",),
          "generation": ("generate",)}


def build_evaluators(config: ExperimentConfig, data: PreparedData, predictors: Predictors, mesh: Mesh,
                     names: Sequence[str]) -> list[Evaluator]:
    split = config.eval.split
    if split not in data.sources:
        raise ConfigError(f"eval.split='{split}' not in the data set's splits {sorted(data.sources)}")
    evaluators = []
    for name in names:
        missing = [fn for fn in _NEEDS[name] if getattr(predictors, fn) is None]
        if missing:
            raise ConfigError(f"eval.evaluators includes '{name}', but objective.name="
                              f"'{config.objective.name}' trains a model without {missing}; remove it")
        evaluators.append(EVALUATORS[name](config, data, predictors, mesh, split))
    return evaluators


def evaluate_all(evaluators: Sequence[Evaluator], params: dict) -> dict[str, float]:
    """Every evaluator's results, merged."""
    results: dict[str, float] = {}
    for evaluator in evaluators:
        results.update(evaluator(params))
    return results
