"""Image->report and report->image Recall@K over a whole split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from radfm_jax.evals.metrics import positives_from_keys, recall_at_k


def retrieval_metrics(
    image_emb: np.ndarray, text_emb: np.ndarray, reports: Sequence[str], ks: Sequence[int]
) -> dict[str, float]:
    """Studies with word-for-word identical reports (boilerplate such as "No acute
    cardiopulmonary abnormality.") count as correct matches for each other, both ways."""
    similarity = image_emb @ text_emb.T
    positives = positives_from_keys(reports, reports)
    results = {}
    for direction, sim in (("i2t", similarity), ("t2i", similarity.T)):
        for k, value in recall_at_k(sim, ks, positives).items():
            results[f"retrieval/{direction}_recall@{k}"] = float(value)
    return results
