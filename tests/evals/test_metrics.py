"""Host-side metrics vs scikit-learn and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radfm_jax.evals.metrics import (
    auroc,
    auroc_per_class,
    first_positive_rank,
    positives_from_keys,
    recall_at_k,
)


# ---------------------------------------------------------------- AUROC
@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    targets = rng.integers(0, 2, size=n)
    targets[:2] = [0, 1]  # both classes present
    # Coarse scores so that ties, including ties across classes, are common.
    scores = np.round(rng.normal(size=n) + 0.7 * targets, 1)
    assert len(np.unique(scores)) < n
    assert auroc(scores, targets) == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)
    as_bool = auroc(scores, targets.astype(bool))
    assert as_bool == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)


def test_auroc_hand_made() -> None:
    assert auroc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    assert auroc([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    # One positive tied with one of two negatives, above the other: (1 + 0.5) / 2.
    assert auroc([0.2, 0.5, 0.5], [0, 0, 1]) == 0.75


def test_auroc_single_class_is_nan() -> None:
    assert math.isnan(auroc([0.1, 0.2, 0.3], [1, 1, 1]))
    assert math.isnan(auroc([0.1, 0.2, 0.3], [0, 0, 0]))


def test_auroc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0/1"):
        auroc([0.1, 0.2, 0.3], [0, 1, -1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        auroc([0.1, 0.2], [0, 1, 1])


def test_auroc_per_class_with_mask() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 3))
    targets = rng.integers(-1, 2, size=(50, 3))  # -1 = uncertain
    targets[:, 2] = 1  # single class -> nan
    valid = targets >= 0
    got = auroc_per_class(scores, targets, valid)
    for c in range(2):
        m = valid[:, c]
        assert got[c] == pytest.approx(roc_auc_score(targets[m, c], scores[m, c]))
    assert math.isnan(got[2])


# ---------------------------------------------------------------- recall@K
def brute_recall(sim: np.ndarray, ks: list[int], pos: list[set[int]]) -> dict[int, float]:
    """Per query: walk items from best to worst, ties with a wrong item put the wrong one first."""
    out = {k: 0 for k in ks}
    for q in range(sim.shape[0]):
        # Sort by score descending; among equal scores incorrect items come first (pessimistic).
        order = sorted(range(sim.shape[1]), key=lambda j: (-sim[q, j], j in pos[q]))
        for k in ks:
            if any(j in pos[q] for j in order[:k]):
                out[k] += 1
    return {k: out[k] / sim.shape[0] for k in ks}


@pytest.mark.parametrize("seed", range(5))
def test_recall_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nq, ni = 20, 30
    sim = np.round(rng.normal(size=(nq, ni)), 1)  # ties
    ks = [1, 2, 5, 10, 30]
    diag = [{i} for i in range(nq)]
    assert recall_at_k(sim, ks) == pytest.approx(brute_recall(sim, ks, diag))
    multi = [
        set(rng.choice(ni, size=int(rng.integers(1, 4)), replace=False).tolist())
        for _ in range(nq)
    ]
    expected = brute_recall(sim, ks, multi)
    assert recall_at_k(sim, ks, multi) == pytest.approx(expected)
    mask = np.zeros((nq, ni), dtype=bool)
    for q, s in enumerate(multi):
        mask[q, list(s)] = True
    assert recall_at_k(sim, ks, mask) == pytest.approx(expected)
    assert recall_at_k(sim, ks, [np.array(sorted(s)) for s in multi]) == pytest.approx(expected)


def test_recall_hand_made() -> None:
    sim = np.array(
        [
            [0.9, 0.1, 0.2],  # correct item 0 ranked 1
            [0.8, 0.3, 0.1],  # correct item 1 ranked 2
            [0.9, 0.8, 0.1],  # correct item 2 ranked 3
        ]
    )
    np.testing.assert_array_equal(first_positive_rank(sim), [1, 2, 3])
    assert recall_at_k(sim, [1, 2, 3]) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}
    # Query 2 and query 1 share a report: both items 1 and 2 correct for each.
    pos = [{0}, {1, 2}, {1, 2}]
    np.testing.assert_array_equal(first_positive_rank(sim, pos), [1, 2, 2])
    assert recall_at_k(sim, [1, 2], pos) == {1: 1 / 3, 2: 1.0}


def test_recall_ties_count_against_query() -> None:
    sim = np.zeros((4, 4))  # a model that says nothing
    np.testing.assert_array_equal(first_positive_rank(sim), [4, 4, 4, 4])
    assert recall_at_k(sim, [1, 3, 4]) == {1: 0.0, 3: 0.0, 4: 1.0}


def test_recall_more_items_than_queries() -> None:
    sim = np.array([[0.5, 0.1, 0.9], [0.0, 0.2, 0.1]])  # 2 queries, 3 items, default i -> i
    np.testing.assert_array_equal(first_positive_rank(sim), [2, 1])


def test_recall_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no correct item"):
        recall_at_k(np.zeros((2, 2)), [1], [{0}, set()])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(np.zeros((2, 2)), [1], [{0}, {2}])
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k(np.zeros((2, 2)), [0])
    with pytest.raises(ValueError, match="at least as many items"):
        recall_at_k(np.zeros((3, 2)), [1])
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.full((2, 2), np.nan), [1])


def test_positives_from_keys() -> None:
    reports = ["normal", "effusion", "normal", "cardiomegaly"]
    mask = positives_from_keys(reports, reports)
    expected = np.array(
        [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool
    )
    np.testing.assert_array_equal(mask, expected)
    # Identical reports: image 2 retrieved first for text 0 is still a hit.
    sim = np.array([[0.1, 0.0, 0.9, 0.0]] * 4)
    assert recall_at_k(sim[:1], [1], mask[:1]) == {1: 1.0}
    assert recall_at_k(sim[:1], [1]) == {1: 0.0}
