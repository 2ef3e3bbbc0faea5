"""Average precision vs scikit-learn, threshold rules and confusion metrics vs hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_curve

from radfm_jax.evals.operating_points import auprc, binary_metrics, choose_threshold

# Eight cases, highest score first: positive, positive, negative, positive, negative, negative,
# positive, negative. Per threshold (score >= t is positive), TPR / FPR:
#   above 0.9: 0/0   0.9: .25/0   0.8: .5/0   0.7: .5/.25   0.6: .75/.25
#   0.5: .75/.5   0.4: .75/.75   0.3: 1/.75   0.2: 1/1
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
TARGETS = np.array([1, 1, 0, 1, 0, 0, 1, 0])


# ---------------------------------------------------------------- AUPRC
@pytest.mark.parametrize("seed", range(5))
def test_auprc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    targets = rng.random(n) < rng.uniform(0.05, 0.6)
    targets[:2] = [False, True]
    scores = np.round(rng.normal(size=n) + targets, 1)  # coarse: ties across classes
    expected = average_precision_score(targets, scores)
    assert auprc(scores, targets) == pytest.approx(expected, abs=1e-12)


def test_auprc_hand_made() -> None:
    # Positives at ranks 1, 2, 4, 7: AP = (1 + 1 + 3/4 + 4/7) / 4.
    assert auprc(SCORES, TARGETS) == pytest.approx((1 + 1 + 0.75 + 4 / 7) / 4)
    assert auprc([0.5, 0.5], [0, 1]) == 0.5  # one tied point: precision 1/2 at recall 1
    assert math.isnan(auprc([0.1, 0.2], [0, 0]))


# ---------------------------------------------------------------- binary metrics
def test_binary_metrics_hand_counts() -> None:
    m = binary_metrics(SCORES, TARGETS, threshold=0.7)  # 0.7 itself is called positive
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 2, 3)
    assert m["sensitivity"] == 0.5
    assert m["specificity"] == 0.75
    assert m["fpr"] == 0.25
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == pytest.approx(5 / 8)


def test_binary_metrics_zero_denominators_are_nan() -> None:
    nobody_called = binary_metrics([0.1, 0.2], [0, 1], threshold=0.5)
    assert math.isnan(nobody_called["ppv"]) and nobody_called["f1"] == 0.0
    no_positives = binary_metrics([0.1, 0.2], [0, 0], threshold=0.5)
    assert math.isnan(no_positives["sensitivity"]) and math.isnan(no_positives["f1"])
    assert no_positives["specificity"] == 1.0


# ---------------------------------------------------------------- thresholds
@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("youden", 0.8),  # J = .5 at 0.8 and 0.6: the higher wins
        (("fpr", 0.25), 0.6),
        (("fpr", 0.0), 0.8),
        (("fpr", 0.5), 0.6),  # TPR .75 at 0.6 and 0.5: the higher (lower FPR) wins
        (("sensitivity", 0.75), 0.6),
        (("sensitivity", 0.6), 0.6),
        (("sensitivity", 1.0), 0.3),
    ],
)
def test_threshold_rules_hand_made(rule, expected: float) -> None:
    assert choose_threshold(SCORES, TARGETS, rule) == expected


def test_strict_rules_can_call_nothing_positive() -> None:
    # The top case is a negative, so FPR 0 is only reached by calling nothing positive.
    threshold = choose_threshold([0.9, 0.5, 0.1], [0, 1, 0], ("fpr", 0.0))
    assert threshold > 0.9
    assert binary_metrics([0.9, 0.5, 0.1], [0, 1, 0], threshold)["fp"] == 0


@pytest.mark.parametrize("seed", range(3))
def test_threshold_rules_agree_with_sklearn_roc_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + 1.2 * targets, 2)
    fpr, tpr, _ = roc_curve(targets, scores, drop_intermediate=False)
    youden = binary_metrics(scores, targets, choose_threshold(scores, targets, "youden"))
    assert youden["sensitivity"] - youden["fpr"] == pytest.approx(np.max(tpr - fpr))
    for budget in (0.05, 0.1, 0.2):
        at = binary_metrics(scores, targets, choose_threshold(scores, targets, ("fpr", budget)))
        assert at["fpr"] <= budget
        assert at["sensitivity"] == pytest.approx(np.max(tpr[fpr <= budget]))
    for required in (0.5, 0.8, 0.95):
        threshold = choose_threshold(scores, targets, ("sensitivity", required))
        assert binary_metrics(scores, targets, threshold)["sensitivity"] >= required
        next_higher = np.min(scores[scores > threshold])
        assert binary_metrics(scores, targets, next_higher)["sensitivity"] < required


def test_bad_rules_and_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="rule"):
        choose_threshold(SCORES, TARGETS, "f1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        choose_threshold(SCORES, TARGETS, ("fpr", 20))
    with pytest.raises(ValueError, match="both"):
        choose_threshold([0.1, 0.2], [1, 1], "youden")
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0.1, 0.2], [0, 2], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        auprc([0.1, float("nan")], [0, 1])
