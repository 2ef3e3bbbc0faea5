"""The prompt-robustness evaluator: zero-shot AUROC of an image-report model under each prompt
set of eval.prompt_sets (evals/prompt_sets.py), scored as the zeroshot evaluator scores its
templated prompts (evals/zeroshot.py), so a number can be checked against someone else's
wording. The split's image embeddings are computed once per call and shared by every set.

Keys: `zeroshot_prompts/<set>/auroc/<finding>`, `zeroshot_prompts/<set>/auroc_mean` (over the
findings the set covers), `zeroshot_prompts/<set>/num_findings_skipped` (the data set's findings
the set has no prompts for) and, with two or more sets, `zeroshot_prompts/auroc_mean_spread`
(the largest set mean minus the smallest)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.prompt_sets import check_findings, load_prompt_sets
from radfm_jax.evals.split_inference import read_targets, run_over_split
from radfm_jax.evals.zeroshot import pair_scores, zeroshot_metrics

log = logging.getLogger(__name__)


class ZeroshotPromptsEvaluator:
    def __init__(self, source: Any, tokenizer: Tokenizer, label_names: Sequence[str], predictors: Predictors,
                 mesh: Mesh, data_cfg: DataConfig, eval_cfg: EvalConfig, *,
                 encode_texts: Callable[[dict, Sequence[str]], np.ndarray]):
        if predictors.encode_image is None or predictors.encode_text is None:
            raise ValueError("zero-shot prompt sets need a model with image and text embeddings")
        # Every file is read and checked here, before any model work.
        self._sets = load_prompt_sets(eval_cfg.prompt_sets)
        self._label_names = tuple(label_names)
        self._covered: dict[str, list[str]] = {}
        for prompt_set in self._sets:
            check_findings(prompt_set, self._label_names)
            self._covered[prompt_set.name] = [f for f in self._label_names if f in prompt_set.pairs]
            skipped = [f for f in self._label_names if f not in prompt_set.pairs]
            if skipped:
                log.info("prompt set '%s' has no prompts for %s: skipped", prompt_set.name, skipped)
        self._source = source
        self._predict = predictors
        self._encode_texts = encode_texts
        self._run = dict(tokenizer=tokenizer, data_cfg=data_cfg, batch_size=eval_cfg.batch_size, mesh=mesh,
                         max_examples=eval_cfg.max_examples)
        self._labels = read_targets(source, eval_cfg.max_examples)[1]

    def __call__(self, params: dict) -> dict[str, float]:
        fn = lambda batch: self._predict.encode_image(params, batch["image"])  # noqa: E731
        image_emb = run_over_split(self._source, {"image": fn}, **self._run)["image"]
        encode = lambda texts: self._encode_texts(params, texts)  # noqa: E731
        logit_scale = self._predict.logit_scale(params)
        results: dict[str, float] = {}
        means = []
        for prompt_set in self._sets:
            covered = self._covered[prompt_set.name]
            scores = pair_scores(image_emb, encode, {f: prompt_set.pairs[f] for f in covered}, logit_scale)
            columns = [self._label_names.index(f) for f in covered]
            prefix = f"zeroshot_prompts/{prompt_set.name}"
            results.update(zeroshot_metrics(scores, self._labels[:, columns], covered, prefix=prefix))
            results[f"{prefix}/num_findings_skipped"] = float(len(self._label_names) - len(covered))
            means.append(results[f"{prefix}/auroc_mean"])
        if len(means) > 1:
            results["zeroshot_prompts/auroc_mean_spread"] = float(np.max(means) - np.min(means))
        return results
