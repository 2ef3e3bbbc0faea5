"""The report-generation evaluator: decodes reports for the first eval.generate.max_examples
studies of the evaluation split and scores them against the reference reports (BLEU, ROUGE-L,
clinical efficacy through the finding labeler, memorisation of training reports)."""

from __future__ import annotations

from typing import Any, Sequence

import jax
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.report_metrics import report_metrics
from radfm_jax.evals.split_inference import read_targets, run_over_split


class GenerationEvaluator:
    def __init__(self, eval_source: Any, train_source: Any, tokenizer: Tokenizer, label_names: Sequence[str],
                 predictors: Predictors, mesh: Mesh, data_cfg: DataConfig, eval_cfg: EvalConfig, *, seed: int):
        if predictors.generate is None:
            raise ValueError("report generation needs a model with a decoder")
        self._source = eval_source
        self._count = eval_cfg.generate.max_examples
        self._references, _ = read_targets(eval_source, self._count)
        self._training_reports = read_targets(train_source)[0]
        self._label_names = tuple(label_names)
        self._ngram = eval_cfg.generate.memorisation_ngram
        self._tokenizer = tokenizer
        self._predict = predictors
        self._key = jax.random.key(seed)
        self._run = dict(tokenizer=tokenizer, data_cfg=data_cfg, batch_size=eval_cfg.batch_size, mesh=mesh)

    @property
    def references(self) -> list[str]:
        return list(self._references)

    def generate(self, params: dict) -> list[str]:
        """Generated report texts, in record order (sampling keys fold in the batch index)."""
        def fn(batch):
            return self._predict.generate(params, batch["image"], jax.random.fold_in(self._key, batch["index"]))

        tokens = run_over_split(self._source, {"tokens": fn}, max_examples=self._count, **self._run)["tokens"]
        return [self._tokenizer.decode(row) for row in tokens]

    def __call__(self, params: dict) -> dict[str, float]:
        generated = self.generate(params)
        return report_metrics(generated, self._references, self._training_reports, self._label_names,
                              ngram=self._ngram)
