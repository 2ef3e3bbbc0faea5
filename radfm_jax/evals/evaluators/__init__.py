"""The evaluators, by name (explicit mapping): each is built from the prepared data and the
model's named predict functions (evals/predictors.py) and is `params -> flat metrics dict`, the
keys `"<evaluator>/<metric>[/<class>]"`. They run inside training on padded, masked batches and
from `radfm eval`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from etils import epath
from jax.sharding import Mesh

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.datasets import PreparedData
from radfm_jax.errors import ConfigError
from radfm_jax.evals.evaluators.classification import ClassificationEvaluator
from radfm_jax.evals.evaluators.generation import GenerationEvaluator
from radfm_jax.evals.evaluators.linear_probe import LinearProbeEvaluator
from radfm_jax.evals.evaluators.robustness import RobustnessEvaluator
from radfm_jax.evals.evaluators.zeroshot_prompts import ZeroshotPromptsEvaluator
from radfm_jax.evals.evaluators.zeroshot_retrieval import ZeroshotRetrievalEvaluator
from radfm_jax.evals.perturbations import PERTURBATIONS
from radfm_jax.evals.predictors import Predictors

Evaluator = Callable[[dict], dict[str, float]]


def _zeroshot_retrieval(config, data, predictors, mesh, split) -> Evaluator:
    # Thresholds are chosen on val; evaluating val itself gets none (they would be tuned on it).
    val = data.sources.get("val") if split != "val" else None
    return ZeroshotRetrievalEvaluator(data.sources[split], data.tokenizer, data.label_names, predictors, mesh,
                                      config.data, config.eval, seed=config.seed, val_source=val)


def _linear_probe(config, data, predictors, mesh, split) -> Evaluator:
    return LinearProbeEvaluator(data.sources["train"], data.sources[split], data.tokenizer, data.label_names,
                                predictors, mesh, config.data, config.eval, seed=config.seed)


def _generation(config, data, predictors, mesh, split) -> Evaluator:
    return GenerationEvaluator(data.sources[split], data.sources["train"], data.tokenizer, data.label_names,
                               predictors, mesh, config.data, config.eval, seed=config.seed)


def _classification(config, data, predictors, mesh, split) -> Evaluator:
    if "val" not in data.sources:
        raise ConfigError("the classification evaluator chooses thresholds and temperatures on a 'val' split, "
                          f"which this data set lacks (splits {sorted(data.sources)})")
    return ClassificationEvaluator(data.sources["val"], data.sources[split], data.tokenizer, data.label_names,
                                   predictors, mesh, config.data, config.eval, seed=config.seed)


def _robustness(config, data, predictors, mesh, split) -> Evaluator:
    if not config.eval.perturbations:
        raise ConfigError("eval.evaluators includes 'robustness'; name the shifts in eval.perturbations "
                          f"(of {', '.join(PERTURBATIONS)})")
    unknown = sorted(set(config.eval.perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ConfigError(f"eval.perturbations {unknown} unknown; use {', '.join(PERTURBATIONS)}")
    encode_texts = None
    if predictors.classify is None:
        if predictors.encode_image is None or predictors.encode_text is None:
            raise ConfigError(f"objective.name='{config.objective.name}' trains neither a classifier nor image "
                              "and text embeddings; the robustness evaluator needs one of them")
        encode_texts = _zeroshot_retrieval(config, data, predictors, mesh, split).encode_texts
    return RobustnessEvaluator(data.sources[split], data.tokenizer, data.label_names, predictors, mesh,
                               config.data, config.eval, seed=config.seed, encode_texts=encode_texts)


def _zeroshot_prompts(config, data, predictors, mesh, split) -> Evaluator:
    if not config.eval.prompt_sets:
        raise ConfigError("eval.evaluators includes 'zeroshot_prompts'; name the prompt set files (JSON) in "
                          "eval.prompt_sets, e.g. eval.prompt_sets=experiments/prompts/heldout_cxr.json")
    encode_texts = _zeroshot_retrieval(config, data, predictors, mesh, split).encode_texts
    return ZeroshotPromptsEvaluator(data.sources[split], data.tokenizer, data.label_names, predictors, mesh,
                                    config.data, config.eval, encode_texts=encode_texts)


EVALUATORS: dict[str, Callable[..., Evaluator]] = {
    "zeroshot_retrieval": _zeroshot_retrieval,
    "linear_probe": _linear_probe,
    "generation": _generation,
    "classification": _classification,
    "robustness": _robustness,
    "zeroshot_prompts": _zeroshot_prompts,
}

# The predict functions each evaluator needs (robustness: a classifier or embeddings).
_NEEDS = {"zeroshot_retrieval": ("encode_image", "encode_text"), "linear_probe": ("image_features",),
          "generation": ("generate",), "classification": ("classify",), "robustness": (),
          "zeroshot_prompts": ("encode_image", "encode_text")}


def build_evaluators(config: ExperimentConfig, data: PreparedData, predictors: Predictors, mesh: Mesh,
                     names: Sequence[str]) -> list[Evaluator]:
    split = config.eval.split
    if split not in data.sources:
        raise ConfigError(f"eval.split='{split}' not in the data set's splits {sorted(data.sources)}")
    asked = {name: f"eval.evaluators includes '{name}'" for name in names}
    if config.eval.prompt_sets and "zeroshot_prompts" not in asked:
        # Naming prompt files asks for them to be scored, whichever evaluators run besides.
        asked["zeroshot_prompts"] = "eval.prompt_sets is set (scored by the 'zeroshot_prompts' evaluator)"
    evaluators = []
    for name, why in asked.items():
        missing = [fn for fn in _NEEDS[name] if getattr(predictors, fn) is None]
        if missing:
            raise ConfigError(f"{why}, but objective.name='{config.objective.name}' trains a model without "
                              f"{missing}; remove it")
        evaluators.append(EVALUATORS[name](config, data, predictors, mesh, split))
    return evaluators


def evaluate_all(evaluators: Sequence[Evaluator], params: dict) -> dict[str, float]:
    """Every evaluator's results, merged."""
    results: dict[str, float] = {}
    for evaluator in evaluators:
        results.update(evaluator(params))
    return results


def write_artifacts(evaluators: Sequence[Evaluator], folder: epath.Path, step: int) -> list[epath.Path]:
    """Figures and per-study predictions of the evaluators that keep them (after a call)."""
    paths: list[epath.Path] = []
    for evaluator in evaluators:
        write = getattr(evaluator, "write_artifacts", None)
        if write is not None:
            paths.extend(write(folder, step))
    return paths
