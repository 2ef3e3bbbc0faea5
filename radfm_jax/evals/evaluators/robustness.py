"""The robustness evaluator: the model's per-finding scores on the evaluated split under each
acquisition shift of eval.perturbations (evals/perturbations.py) at severities 1-3, and the drop
of the mean AUROC from the unperturbed split. Scores come from a fine-tuned classifier's logits
when the model has them, else from CheXzero-style zero-shot prompts.

Keys: `robustness/clean/auroc_mean`, `robustness/<perturbation>/<severity>/auroc_mean` and
`.../drop` (clean minus perturbed: positive = worse)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.data.transforms import IMAGE_MEAN, IMAGE_STD
from radfm_jax.evals.intervals import mean_over_findings
from radfm_jax.evals.metrics import auroc
from radfm_jax.evals.perturbations import SEVERITIES, perturb
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.split_inference import read_targets, run_over_split
from radfm_jax.evals.zeroshot import phrase_table, zeroshot_scores

ImageTransform = Callable[[np.ndarray, int], np.ndarray] | None


def mean_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    return mean_over_findings(auroc, scores, labels)


def perturbation_transform(name: str, severity: int, seed: int) -> ImageTransform:
    """A run_over_split image transform: normalised model inputs -> display space -> perturbed
    -> normalised again, seeded by (seed, batch index)."""
    def transform(images: np.ndarray, index: int) -> np.ndarray:
        display = images * np.float32(IMAGE_STD) + np.float32(IMAGE_MEAN)
        shifted = perturb(display, name, severity, seed=seed * 100_003 + index)
        return ((shifted - np.float32(IMAGE_MEAN)) / np.float32(IMAGE_STD)).astype(np.float32)

    return transform


class RobustnessEvaluator:
    def __init__(self, source: Any, tokenizer: Tokenizer, label_names: Sequence[str], predictors: Predictors,
                 mesh: Mesh, data_cfg: DataConfig, eval_cfg: EvalConfig, *, seed: int,
                 encode_texts: Callable[[dict, Sequence[str]], np.ndarray] | None = None):
        if not eval_cfg.perturbations:
            raise ValueError("the robustness evaluator needs eval.perturbations")
        if predictors.classify is None and (predictors.encode_image is None or encode_texts is None):
            raise ValueError("the robustness evaluator needs a classifier or image and text embeddings")
        self._source = source
        self._label_names = tuple(label_names)
        self._data_name = data_cfg.name
        self._predict = predictors
        self._encode_texts = encode_texts
        self._cfg = eval_cfg
        self._seed = seed
        self._run = dict(tokenizer=tokenizer, data_cfg=data_cfg, batch_size=eval_cfg.batch_size, mesh=mesh,
                         max_examples=eval_cfg.max_examples)
        self._labels = read_targets(source, eval_cfg.max_examples)[1]

    def scores(self, params: dict, transform: ImageTransform = None) -> np.ndarray:
        """(N, findings) scores of the (transformed) split."""
        if self._predict.classify is not None:
            fn = lambda batch: self._predict.classify(params, batch["image"])  # noqa: E731
            return run_over_split(self._source, {"logits": fn}, image_transform=transform, **self._run)["logits"]
        fn = lambda batch: self._predict.encode_image(params, batch["image"])  # noqa: E731
        image_emb = run_over_split(self._source, {"image": fn}, image_transform=transform, **self._run)["image"]
        by_finding = zeroshot_scores(image_emb, lambda texts: self._encode_texts(params, texts), self._label_names,
                                     self._cfg.positive_templates, self._cfg.negative_templates,
                                     self._predict.logit_scale(params), phrase_table(self._data_name))
        return np.stack([by_finding[name] for name in self._label_names], axis=1)

    def __call__(self, params: dict) -> dict[str, float]:
        clean = mean_auroc(self.scores(params), self._labels)
        results = {"robustness/clean/auroc_mean": clean}
        for name in self._cfg.perturbations:
            for severity in SEVERITIES:
                shifted = mean_auroc(self.scores(params, perturbation_transform(name, severity, self._seed)),
                                     self._labels)
                results[f"robustness/{name}/{severity}/auroc_mean"] = shifted
                results[f"robustness/{name}/{severity}/drop"] = clean - shifted
        return results
