"""Image->report and report->image retrieval Recall@K over a whole split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from radfm_jax.evals.metrics import recall_at_k


def identical_text_groups(reports: Sequence[str]) -> list[np.ndarray]:
    """For each report, the indices of every report with the same text: a template-generated
    or boilerplate report ("No acute abnormality.") is a correct match for all its studies."""
    by_text: dict[str, list[int]] = {}
    for index, text in enumerate(reports):
        by_text.setdefault(text, []).append(index)
    return [np.asarray(by_text[text]) for text in reports]


def retrieval_metrics(
    image_emb: np.ndarray, text_emb: np.ndarray, reports: Sequence[str], ks: Sequence[int]
) -> dict[str, float]:
    similarity = image_emb @ text_emb.T
    positives = identical_text_groups(reports)
    results = {}
    for direction, sim in (("i2t", similarity), ("t2i", similarity.T)):
        for k, value in recall_at_k(sim, ks, positives).items():
            results[f"retrieval/{direction}_recall@{k}"] = float(value)
    return results
