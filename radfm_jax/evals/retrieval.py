"""Image->report and report->image Recall@K over a whole split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from radfm_jax.evals.bootstrap import bootstrap_ci
from radfm_jax.evals.metrics import first_positive_rank, positives_from_keys, recall_at_k


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


def retrieval_intervals(image_emb: np.ndarray, text_emb: np.ndarray, reports: Sequence[str], ks: Sequence[int],
                        patient_ids: np.ndarray, *, n_resamples: int, seed: int) -> dict[str, float]:
    """Patient-bootstrap intervals of each Recall@K: the candidates stay the whole split, the
    queries are resampled by patient (`.../ci_low`, `.../ci_high`)."""
    similarity = image_emb @ text_emb.T
    positives = positives_from_keys(reports, reports)
    results = {}
    for direction, sim in (("i2t", similarity), ("t2i", similarity.T)):
        ranks = first_positive_rank(sim, positives)
        for k in ks:
            interval = bootstrap_ci(np.mean, (ranks <= k).astype(np.float64), patient_ids=patient_ids,
                                    n_resamples=n_resamples, seed=seed)
            key = f"retrieval/{direction}_recall@{k}"
            results.update({f"{key}/ci_low": interval.low, f"{key}/ci_high": interval.high})
    return results
