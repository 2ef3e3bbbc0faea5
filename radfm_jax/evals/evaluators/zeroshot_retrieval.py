"""The evaluator of image-report models: embeds a split once per call on padded, masked
batches (fixed shapes, compiled once) and reports zero-shot AUROC and retrieval recall.

With several processes each reads its rows of every batch and the embeddings are gathered to
every process, so all of them compute the same metrics."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from etils import epath
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.device_put import global_batch_from_full
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.evaluators.predictions import write_predictions
from radfm_jax.evals.intervals import auroc_intervals
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.retrieval import retrieval_intervals, retrieval_metrics
from radfm_jax.evals.split_inference import read_metadata, read_targets, run_over_split
from radfm_jax.evals.zeroshot import zeroshot_metrics, zeroshot_scores
from radfm_jax.parallel.mesh import batch_sharding
from radfm_jax.parallel.multihost import gather_to_host


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
    ):
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

    def _embed_split(self, params: dict) -> tuple[np.ndarray, np.ndarray]:
        out = run_over_split(
            self._source,
            {"image": lambda batch: self._predict.encode_image(params, batch["image"]),
             "text": lambda batch: self._predict.encode_text(params, batch["tokens"])},
            tokenizer=self._tokenizer, data_cfg=self._data_cfg, batch_size=self._cfg.batch_size,
            mesh=self._mesh, max_examples=self._cfg.max_examples,
        )
        return out["image"], out["text"]

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
        scores = zeroshot_scores(
            image_emb,
            lambda texts: self.encode_texts(params, texts),
            self._label_names,
            self._cfg.positive_templates,
            self._cfg.negative_templates,
            self._predict.logit_scale(params),
        )
        self._scores = np.stack([scores[name] for name in self._label_names], axis=1)
        results = zeroshot_metrics(scores, self._labels, self._label_names)
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
