"""The linear-probe evaluator: frozen pooled image features of the training split (first
eval.probe_train_examples rows) fit a closed-form ridge probe per finding on the host
(evals/ridge_probe.py); AUROC on the evaluation split. Works for any model with an
`image_features` predict function (contrastive towers, MAE encoders, captioners)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.intervals import auroc_intervals
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.ridge_probe import fit_linear_probe, linear_probe_metrics
from radfm_jax.evals.split_inference import read_metadata, read_targets, run_over_split


class LinearProbeEvaluator:
    def __init__(self, train_source: Any, eval_source: Any, tokenizer: Tokenizer, label_names: Sequence[str],
                 predictors: Predictors, mesh: Mesh, data_cfg: DataConfig, eval_cfg: EvalConfig, seed: int = 0):
        if predictors.image_features is None:
            raise ValueError("the linear probe needs a model with image features")
        self._sources = {"train": (train_source, eval_cfg.probe_train_examples),
                         "eval": (eval_source, eval_cfg.max_examples)}
        self._labels = {name: read_targets(source, count)[1] for name, (source, count) in self._sources.items()}
        self._label_names = tuple(label_names)
        self._predict = predictors
        self._run = dict(tokenizer=tokenizer, data_cfg=data_cfg, batch_size=eval_cfg.batch_size, mesh=mesh)
        self._cfg = eval_cfg
        self._seed = seed  # of the bootstrap's resamples

    def _features(self, params: dict, name: str) -> np.ndarray:
        source, count = self._sources[name]
        fn = lambda batch: self._predict.image_features(params, batch["image"])
        return run_over_split(source, {"features": fn}, max_examples=count, **self._run)["features"]

    def __call__(self, params: dict) -> dict[str, float]:
        probe = fit_linear_probe(self._features(params, "train").astype(np.float64), self._labels["train"])
        features = self._features(params, "eval").astype(np.float64)
        results = linear_probe_metrics(probe, features, self._labels["eval"], self._label_names)
        if self._cfg.bootstrap:
            source, count = self._sources["eval"]
            results.update(auroc_intervals(
                "linear_probe", probe.scores(features), self._labels["eval"], self._label_names,
                read_metadata(source, count)["patient_id"], n_resamples=self._cfg.bootstrap, seed=self._seed))
        return results
