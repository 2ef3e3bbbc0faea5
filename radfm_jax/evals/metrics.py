"""Pure NumPy metric functions, run on the host by the evaluators.

* :func:`auroc`: area under the ROC curve by the rank (Mann–Whitney U) formula, ties averaged.
* :func:`auroc_per_class`: the same per column, with an optional validity mask (e.g. to drop
  CheXpert "uncertain" / "not mentioned" labels).
* :func:`first_positive_rank` / :func:`recall_at_k`: retrieval ranks and Recall@K, with optional
  sets of correct items per query (several studies can share an identical report).
* :func:`positives_from_keys`: builds that positives matrix from per-query / per-item keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with tied values given the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)  # rank of the last element of each tie group
    return (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]


def as_binary_inputs(
    scores: ArrayLike, targets: ArrayLike, caller: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(N,)`` float64 scores and bool targets.

    Raises:
      ValueError: shapes differ or are not 1-D, scores are not finite, or targets are not 0/1.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 1 or s.shape != t.shape:
        raise ValueError(
            f"{caller} expects 1-D scores and targets of equal length; got {s.shape}, {t.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{caller}: scores contain NaN or inf")
    if t.dtype != np.bool_ and not np.all((t == 0) | (t == 1)):
        raise ValueError(f"{caller}: targets must be 0/1 (drop other values first, e.g. uncertain labels)")
    return s, t.astype(bool)


def auroc(scores: ArrayLike, targets: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``targets`` (1 = positive).

    Computed as the Mann–Whitney U statistic from average ranks, so a tie between a positive and a
    negative counts one half — the same value as ``sklearn.metrics.roc_auc_score``.

    Args:
      scores: ``(N,)`` finite real scores, higher meaning "more likely positive".
      targets: ``(N,)`` labels in ``{0, 1}`` (bool or numeric).

    Returns:
      The AUROC as a Python float; ``nan`` when only one class is present (undefined).

    Raises:
      ValueError: shapes differ or are not 1-D, scores are not finite, or targets are not 0/1.
    """
    s, pos = as_binary_inputs(scores, targets, "auroc")
    n_pos = int(pos.sum())
    n_neg = int(pos.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_per_class(
    scores: np.ndarray, targets: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """AUROC of each column of ``(N, C)`` ``scores`` / ``targets``; ``nan`` where undefined.

    ``valid`` (``(N, C)`` bool, optional) selects which entries count for each class; entries
    where it is False are ignored, and their targets may be anything (e.g. ``-1`` uncertain).
    """
    s = np.asarray(scores)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(
            f"auroc_per_class expects (N, C) scores and targets; got {s.shape}, {t.shape}"
        )
    m = np.ones(s.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if m.shape != s.shape:
        raise ValueError(f"auroc_per_class: valid has shape {m.shape}, expected {s.shape}")
    return np.array([auroc(s[m[:, c], c], t[m[:, c], c]) for c in range(s.shape[1])])


def _positives_matrix(
    n_queries: int, n_items: int, positives: np.ndarray | Sequence[Iterable[int]] | None
) -> np.ndarray:
    if positives is None:
        if n_queries > n_items:
            raise ValueError(
                f"recall: {n_queries} queries but only {n_items} items; with the default "
                "'query i matches item i' there must be at least as many items as queries"
            )
        return np.eye(n_queries, n_items, dtype=bool)
    if isinstance(positives, np.ndarray) and positives.dtype == np.bool_:
        if positives.shape != (n_queries, n_items):
            raise ValueError(
                f"recall: positives mask has shape {positives.shape}, "
                f"expected {(n_queries, n_items)}"
            )
        mask = positives.copy()
    else:
        if len(positives) != n_queries:
            raise ValueError(
                f"recall: positives has {len(positives)} entries, "
                f"expected one per query ({n_queries})"
            )
        mask = np.zeros((n_queries, n_items), dtype=bool)
        for q, items in enumerate(positives):
            idx = np.asarray(items if isinstance(items, np.ndarray) else list(items), np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n_items):
                raise ValueError(f"recall: positives for query {q} index outside [0, {n_items})")
            mask[q, idx] = True
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"recall: queries {empty[:10].tolist()} have no correct item")
    return mask


def first_positive_rank(
    similarity: np.ndarray, positives: np.ndarray | Sequence[Iterable[int]] | None = None
) -> np.ndarray:
    """1-based rank of the best-scoring correct item for each query.

    ``rank[q] = 1 + #{incorrect items j : similarity[q, j] >= max_{correct c} similarity[q, c]}``.
    Ties with incorrect items are resolved *against* the query, so a model that scores every item
    the same gets the worst rank, not the best. Other correct items never push the rank down.

    Args:
      similarity: ``(N_queries, N_items)`` finite scores, higher = more similar.
      positives: which items are correct for each query. ``None``: item ``i`` for query ``i``
        (needs ``N_items >= N_queries``). Otherwise a ``(N_queries, N_items)`` bool mask, or a
        sequence of ``N_queries`` collections (set, list, array) of item indices — e.g. when
        several
        studies share an identical report, every image of that report is correct for the text
        query (see :func:`positives_from_keys`). Every query needs at least one correct item.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"recall: similarity must be (N_queries, N_items); got shape {sim.shape}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("recall: similarity contains NaN or inf")
    mask = _positives_matrix(sim.shape[0], sim.shape[1], positives)
    best_pos = np.max(np.where(mask, sim, -np.inf), axis=1, keepdims=True)
    return 1 + np.sum((~mask) & (sim >= best_pos), axis=1)


def recall_at_k(
    similarity: np.ndarray,
    ks: Sequence[int],
    positives: np.ndarray | Sequence[Iterable[int]] | None = None,
) -> dict[int, float]:
    """Recall@K: the fraction of queries with at least one correct item among the top ``k``.

    ``similarity`` and ``positives`` are as in :func:`first_positive_rank` (ties resolved against
    the query). Returns ``{k: recall}`` for each ``k`` in ``ks`` (each ``k >= 1``).
    """
    bad = [k for k in ks if int(k) != k or k < 1]
    if bad:
        raise ValueError(f"recall_at_k: ks must be positive integers; got {bad}")
    ranks = first_positive_rank(similarity, positives)
    return {int(k): float(np.mean(ranks <= k)) for k in ks}


def positives_from_keys(
    query_keys: Sequence[Hashable], item_keys: Sequence[Hashable]
) -> np.ndarray:
    """``(N_queries, N_items)`` bool mask: item ``j`` is correct for query ``q`` iff the keys match.

    E.g. text→image retrieval with ``query_keys = item_keys = reports``: every image whose report
    is identical to the query text counts as a hit.
    """
    index: dict[Hashable, int] = {}
    q = np.array([index.setdefault(k, len(index)) for k in query_keys], dtype=np.int64)
    i = np.array([index.setdefault(k, len(index)) for k in item_keys], dtype=np.int64)
    return q[:, None] == i[None, :]
