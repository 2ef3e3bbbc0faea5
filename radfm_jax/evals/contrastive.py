"""The evaluator of image-report models: embeds a split once per call on padded, masked
batches (fixed shapes, compiled once) and reports zero-shot AUROC and retrieval recall.

With several processes each reads its rows of every batch and the embeddings are gathered to
every process, so all of them compute the same metrics."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.device_put import global_batch_from_full, to_global_batch
from radfm_jax.data.pipeline import make_eval_batches
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.evals.retrieval import retrieval_metrics
from radfm_jax.evals.zeroshot import zeroshot_metrics, zeroshot_scores
from radfm_jax.parallel.mesh import batch_sharding
from radfm_jax.parallel.multihost import gather_to_host
from radfm_jax.train.step import Encoders


class ContrastiveEvaluator:
    def __init__(
        self,
        source: Any,
        tokenizer: Tokenizer,
        label_names: Sequence[str],
        encoders: Encoders,
        mesh: Mesh,
        data_cfg: DataConfig,
        eval_cfg: EvalConfig,
    ):
        self._source = source
        self._tokenizer = tokenizer
        self._label_names = tuple(label_names)
        self._encoders = encoders
        self._sharding = batch_sharding(mesh)
        self._data_cfg = data_cfg
        self._cfg = eval_cfg
        self._reports, self._labels = self._read_targets()

    def _read_targets(self) -> tuple[list[str], np.ndarray]:
        count = len(self._source)
        if self._cfg.max_examples:
            count = min(count, self._cfg.max_examples)
        records = [self._source[i] for i in range(count)]
        reports = [r["report"].decode() if isinstance(r["report"], bytes) else r["report"] for r in records]
        return reports, np.stack([r["labels"] for r in records])

    def _batches(self):
        return make_eval_batches(
            self._source,
            tokenizer=self._tokenizer,
            data_cfg=self._data_cfg,
            batch_size=self._cfg.batch_size,
            max_examples=self._cfg.max_examples,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def _embed_split(self, params: dict) -> tuple[np.ndarray, np.ndarray]:
        image_parts, text_parts = [], []
        for host_batch in self._batches():
            batch = to_global_batch({k: host_batch[k] for k in ("image", "tokens", "mask")}, self._sharding)
            got = gather_to_host({
                "image": self._encoders.encode_image(params, batch["image"]),
                "text": self._encoders.encode_text(params, batch["tokens"]),
                "mask": batch["mask"],
            })
            mask = np.asarray(got["mask"], bool)
            image_parts.append(np.asarray(got["image"])[mask])
            text_parts.append(np.asarray(got["text"])[mask])
        return np.concatenate(image_parts), np.concatenate(text_parts)

    def encode_texts(self, params: dict, texts: Sequence[str]) -> np.ndarray:
        """Embed free text (prompts) in chunks padded to the eval batch size (fixed shapes)."""
        size = self._cfg.batch_size
        parts = []
        for start in range(0, len(texts), size):
            chunk = self._tokenizer.encode_batch(list(texts[start : start + size]), self._data_cfg.max_text_len)
            padded = np.zeros((size, chunk.shape[1]), chunk.dtype)
            padded[: len(chunk)] = chunk
            batch = global_batch_from_full({"tokens": padded}, self._sharding)
            emb = gather_to_host(self._encoders.encode_text(params, batch["tokens"]))
            parts.append(np.asarray(emb)[: len(chunk)])
        return np.concatenate(parts)

    def __call__(self, params: dict, logit_scale: float) -> dict[str, float]:
        image_emb, text_emb = self._embed_split(params)
        scores = zeroshot_scores(
            image_emb,
            lambda texts: self.encode_texts(params, texts),
            self._label_names,
            self._cfg.positive_templates,
            self._cfg.negative_templates,
            logit_scale,
        )
        results = zeroshot_metrics(scores, self._labels, self._label_names)
        results.update(retrieval_metrics(image_emb, text_emb, self._reports, self._cfg.recall_ks))
        results["eval/num_examples"] = float(len(image_emb))
        return results
