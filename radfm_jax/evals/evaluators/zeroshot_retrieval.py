"""The evaluator of image-report models: embeds a split once per call on padded, masked
batches (fixed shapes, compiled once) and reports zero-shot AUROC and retrieval recall.

Given the val split it also reports the zero-shot scores at a threshold per finding chosen on
val (eval.operating_point, on the first eval.threshold_examples val rows, same prompts and
model) and applied unchanged to the evaluated split: `zeroshot/<metric>/<finding>` for f1,
accuracy, precision, sensitivity, specificity and threshold, and `zeroshot/<metric>_mean`.
With eval.test_tuned the same metrics at the best-F1 threshold of the evaluated split itself
(optimistic: the convention some 3D papers use) go under `zeroshot/test_tuned/...` only.

With several processes each reads its rows of every batch and the embeddings are gathered to
every process, so all of them compute the same metrics."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from etils import epath
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.device_put import global_batch_from_full
from radfm_jax.data.findings import binary_targets
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.evaluators.predictions import write_predictions
from radfm_jax.evals.intervals import auroc_intervals
from radfm_jax.evals.operating_points import (Rule, best_f1_threshold, binary_metrics, choose_threshold,
                                              parse_operating_point)
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.retrieval import retrieval_intervals, retrieval_metrics
from radfm_jax.evals.split_inference import read_metadata, read_targets, run_over_split
from radfm_jax.evals.zeroshot import phrase_table, zeroshot_metrics, zeroshot_scores
from radfm_jax.parallel.mesh import batch_sharding
from radfm_jax.parallel.multihost import gather_to_host


PREFIX = "zeroshot"
# Metrics at a threshold: binary_metrics name -> the name in the keys.
AT_THRESHOLD = {"f1": "f1", "accuracy": "accuracy", "ppv": "precision", "sensitivity": "sensitivity",
                "specificity": "specificity"}
TEST_TUNED = "test_tuned"


def threshold_metrics(val_scores: np.ndarray, val_labels: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      label_names: Sequence[str], rule: Rule, *, test_tuned: bool = False,
                      prefix: str = PREFIX) -> dict[str, float]:
    """Per finding (column i of the (N, findings) scores and CheXpert label rows belongs to
    label_names[i]): the metrics of AT_THRESHOLD on the evaluated split at the threshold `rule`
    picks on the val split, as `<prefix>/<metric>/<finding>` and `<prefix>/threshold/<finding>`,
    and their means over findings, `<prefix>/<metric>_mean`. Uncertain labels are left out on
    both splits, as for AUROC; a finding without both classes in val and in the evaluated split
    gets nan (null in the JSON file), as AUROC does.

    test_tuned: also the same at the best-F1 threshold of the evaluated split itself, under
    `<prefix>/test_tuned/...` only, over the same findings so the two sets of means compare."""
    conventions = ("", f"{TEST_TUNED}/") if test_tuned else ("",)
    results: dict[str, float] = {}
    for index, finding in enumerate(label_names):
        val_targets, val_valid = binary_targets(val_labels[:, index])
        targets, valid = binary_targets(labels[:, index])
        vs, vt = val_scores[val_valid, index], val_targets[val_valid].astype(bool)
        s, t = scores[valid, index], targets[valid].astype(bool)
        scorable = vt.any() and not vt.all() and t.any() and not t.all()
        for convention in conventions:
            values = dict.fromkeys(("threshold", *AT_THRESHOLD.values()), float("nan"))
            if scorable:
                threshold = best_f1_threshold(s, t) if convention else choose_threshold(vs, vt, rule)
                at = binary_metrics(s, t, threshold)
                values = {"threshold": threshold, **{name: float(at[metric]) for metric, name in AT_THRESHOLD.items()}}
            results.update({f"{prefix}/{convention}{name}/{finding}": value for name, value in values.items()})
    for convention in conventions:
        for name in AT_THRESHOLD.values():
            values = [v for f in label_names if not np.isnan(v := results[f"{prefix}/{convention}{name}/{f}"])]
            results[f"{prefix}/{convention}{name}_mean"] = float(np.mean(values)) if values else float("nan")
    return results


class ZeroshotRetrievalEvaluator:
    def __init__(
        self,
        source: Any,
        tokenizer: Tokenizer,
        label_names: Sequence[str],
        predictors: Predictors,
        mesh: Mesh,
        data_cfg: DataConfig,
        eval_cfg: EvalConfig,
        seed: int = 0,
        *,
        val_source: Any = None,
    ):
        """val_source: the split thresholds are chosen on (None: no metrics at a threshold)."""
        if predictors.encode_image is None or predictors.encode_text is None:
            raise ValueError("zero-shot and retrieval evaluation needs a model with image and text embeddings")
        self._source = source
        self._tokenizer = tokenizer
        self._label_names = tuple(label_names)
        self._predict = predictors
        self._mesh = mesh
        self._sharding = batch_sharding(mesh)
        self._data_cfg = data_cfg
        self._cfg = eval_cfg
        self._seed = seed  # of the bootstrap's resamples
        self._reports, self._labels = read_targets(source, eval_cfg.max_examples)
        self._scores: np.ndarray | None = None  # (N, findings) of the last call
        self._rule = parse_operating_point(eval_cfg.operating_point)
        self._val_source = val_source
        self._val_labels = None if val_source is None else read_targets(val_source, eval_cfg.threshold_examples)[1]

    def _embed_split(self, params: dict) -> tuple[np.ndarray, np.ndarray]:
        out = run_over_split(
            self._source,
            {"image": lambda batch: self._predict.encode_image(params, batch["image"]),
             "text": lambda batch: self._predict.encode_text(params, batch["tokens"])},
            tokenizer=self._tokenizer, data_cfg=self._data_cfg, batch_size=self._cfg.batch_size,
            mesh=self._mesh, max_examples=self._cfg.max_examples,
        )
        return out["image"], out["text"]

    def _embed_val(self, params: dict) -> np.ndarray:
        """Image embeddings of the val rows thresholds are chosen on (no text: only images are scored)."""
        out = run_over_split(
            self._val_source, {"image": lambda batch: self._predict.encode_image(params, batch["image"])},
            tokenizer=self._tokenizer, data_cfg=self._data_cfg, batch_size=self._cfg.batch_size,
            mesh=self._mesh, max_examples=self._cfg.threshold_examples,
        )
        return out["image"]

    def encode_texts(self, params: dict, texts: Sequence[str]) -> np.ndarray:
        """Embed free text (prompts) in chunks padded to the eval batch size (fixed shapes)."""
        size = self._cfg.batch_size
        parts = []
        for start in range(0, len(texts), size):
            chunk = self._tokenizer.encode_batch(list(texts[start : start + size]), self._data_cfg.max_text_len)
            padded = np.zeros((size, chunk.shape[1]), chunk.dtype)
            padded[: len(chunk)] = chunk
            batch = global_batch_from_full({"tokens": padded}, self._sharding)
            emb = gather_to_host(self._predict.encode_text(params, batch["tokens"]))
            parts.append(np.asarray(emb)[: len(chunk)])
        return np.concatenate(parts)

    def __call__(self, params: dict) -> dict[str, float]:
        image_emb, text_emb = self._embed_split(params)
        val_emb = None if self._val_source is None else self._embed_val(params)
        # One scoring of both splits' images: the same prompt embeddings and scale for each.
        scores = zeroshot_scores(
            image_emb if val_emb is None else np.concatenate([image_emb, val_emb]),
            lambda texts: self.encode_texts(params, texts),
            self._label_names,
            self._cfg.positive_templates,
            self._cfg.negative_templates,
            self._predict.logit_scale(params),
            phrase_table(self._data_cfg.name),
        )
        both = np.stack([scores[name] for name in self._label_names], axis=1)
        self._scores = both[: len(image_emb)]
        results = zeroshot_metrics(dict(zip(self._label_names, self._scores.T)), self._labels, self._label_names)
        if val_emb is not None:
            results.update(threshold_metrics(both[len(image_emb):], self._val_labels, self._scores, self._labels,
                                             self._label_names, self._rule, test_tuned=self._cfg.test_tuned))
            results[f"{PREFIX}/threshold_examples"] = float(len(val_emb))
        results.update(retrieval_metrics(image_emb, text_emb, self._reports, self._cfg.recall_ks))
        results["eval/num_examples"] = float(len(image_emb))
        if self._cfg.bootstrap:
            patients = read_metadata(self._source, self._cfg.max_examples)["patient_id"]
            options = dict(n_resamples=self._cfg.bootstrap, seed=self._seed)
            results.update(auroc_intervals("zeroshot", self._scores, self._labels, self._label_names, patients,
                                           **options))
            results.update(retrieval_intervals(image_emb, text_emb, self._reports, self._cfg.recall_ks, patients,
                                               **options))
        return results

    def write_artifacts(self, folder: epath.Path, step: int) -> list[epath.Path]:
        """The zero-shot scores of the last call, per study (for `radfm eval --compare`)."""
        if self._scores is None:
            return []
        metadata = read_metadata(self._source, self._cfg.max_examples)
        path = epath.Path(folder) / f"step_{step:08d}.zeroshot.predictions.npz"
        return [write_predictions(path, "zeroshot", self._scores, self._labels, metadata, self._label_names)]
