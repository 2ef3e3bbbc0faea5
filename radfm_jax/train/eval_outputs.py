"""What an evaluation leaves in WORKDIR/eval/ for a step: the metrics (step_<8 digits>.json),
the manifest of what it ran on, and the evaluators' figures and per-study predictions. Used by
training and by `radfm eval` alike."""

from __future__ import annotations

from collections.abc import Sequence

from etils import epath

from radfm_jax.evals.evaluators import Evaluator, write_artifacts
from radfm_jax.evals.manifest import evaluation_manifest, params_sha256, split_summaries
from radfm_jax.parallel import multihost
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.metric_writer import MetricWriter


def record_evaluation(writer: MetricWriter | None, exp: Experiment, step: int, params: dict,
                      evaluators: Sequence[Evaluator], results: dict[str, float]) -> epath.Path | None:
    """Every process calls this (the parameter hash gathers from all); the primary one, which
    holds the writer, writes. Returns the metrics file's path there."""
    params_hash = params_sha256(params)
    if writer is None or not multihost.is_primary():
        return None
    path = writer.write_eval(step, results)
    config = exp.config
    splits = split_summaries(exp.data, config.eval.split, config.eval.max_examples)
    writer.write_manifest(step, evaluation_manifest(config, exp.data, splits, step, params_hash))
    write_artifacts(evaluators, path.parent, step)
    return path
