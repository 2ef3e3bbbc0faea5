"""Operating points of a binary score: average precision, threshold rules and the confusion-matrix
metrics at a threshold.

A score is called positive when ``score >= threshold``, everywhere in this package. Choose the
threshold on a validation split (:func:`choose_threshold`) and apply it unchanged to the test
split (:func:`binary_metrics`): a threshold tuned on the test split makes its sensitivity and
specificity optimistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from radfm_jax.errors import ConfigError
from radfm_jax.evals.metrics import as_binary_inputs

ArrayLike = np.ndarray | Sequence[float]
Rule = Literal["youden"] | tuple[Literal["fpr", "sensitivity"], float]

# Rates such as 20 / 100 are compared with a target such as 0.2 up to float rounding.
_RATE_TOLERANCE = 1e-12


def _curve(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores, highest first, and the true / false positives when each is the
    threshold. Tied scores form one point, as in scikit-learn's curves."""
    order = np.argsort(-s, kind="stable")
    ranked_scores, ranked_targets = s[order], t[order]
    last_of_tie = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    tp = np.cumsum(ranked_targets)[last_of_tie]
    fp = np.cumsum(~ranked_targets)[last_of_tie]
    return ranked_scores[last_of_tie], tp, fp


def auprc(scores: ArrayLike, targets: ArrayLike) -> float:
    """Area under the precision–recall curve as average precision, ``sum_n (R_n - R_{n-1}) P_n``
    over the distinct thresholds — the value of ``sklearn.metrics.average_precision_score``.

    Unlike AUROC its chance level is the prevalence, so it shows how a rare finding's positives
    rank against many negatives. Returns ``nan`` when there is no positive (undefined; scikit-learn
    warns and returns 0 there).
    """
    s, t = as_binary_inputs(scores, targets, "auprc")
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    _, tp, fp = _curve(s, t)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def choose_threshold(scores: ArrayLike, targets: ArrayLike, rule: Rule) -> float:
    """The threshold (one of the scores, or just above the highest) that a rule picks.

    Rules:
      ``"youden"``: maximise sensitivity + specificity - 1 (ties: the highest threshold).
      ``("fpr", x)``: the largest sensitivity with false-positive rate <= x, at the highest
        threshold reaching it (so the lowest FPR among equals) — e.g. a screening budget.
      ``("sensitivity", x)``: the highest threshold with sensitivity >= x (the fewest false
        positives for a required sensitivity).

    Use it on the validation split and apply the result to the test split with
    :func:`binary_metrics`.

    Raises:
      ValueError: bad inputs, an unknown rule, a rate outside [0, 1], or only one class present.
    """
    s, t = as_binary_inputs(scores, targets, "choose_threshold")
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("choose_threshold needs both positives and negatives")
    thresholds, tp, fp = _curve(s, t)
    # A first point that calls nothing positive, so strict rules (e.g. FPR <= 0) always have one.
    thresholds = np.r_[np.nextafter(thresholds[0], np.inf), thresholds]
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    if rule == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])  # argmax takes the first: highest threshold
    if not (isinstance(rule, tuple) and len(rule) == 2 and rule[0] in ("fpr", "sensitivity")):
        raise ValueError(f"rule must be 'youden', ('fpr', x) or ('sensitivity', x); got {rule!r}")
    kind, rate = rule
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"choose_threshold: the rate in {rule!r} must lie in [0, 1]")
    if kind == "fpr":
        allowed = fpr <= rate + _RATE_TOLERANCE
        best = tpr[allowed].max()
        return float(thresholds[np.flatnonzero(allowed & (tpr == best))[0]])
    return float(thresholds[np.flatnonzero(tpr >= rate - _RATE_TOLERANCE)[0]])


def parse_operating_point(text: str) -> Rule:
    """eval.operating_point -> a choose_threshold rule."""
    if text == "youden":
        return "youden"
    kind, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind not in ("fpr", "sensitivity") or not 0.0 < number < 1.0:
        raise ConfigError(f"eval.operating_point='{text}' is not 'youden', 'fpr:<x>' or 'sensitivity:<x>' "
                          "with 0 < x < 1")
    return kind, number


def best_f1_threshold(scores: ArrayLike, targets: ArrayLike) -> float:
    """The threshold (one of the scores) with the highest F1 on these scores (ties: the highest
    threshold). Tuned on the split it is then scored on, it is the optimistic "test-tuned"
    convention: report it only beside, and labelled apart from, a threshold chosen on val.

    Raises:
      ValueError: bad inputs or no positive.
    """
    s, t = as_binary_inputs(scores, targets, "best_f1_threshold")
    n_pos = int(t.sum())
    if n_pos == 0:
        raise ValueError("best_f1_threshold needs a positive")
    # Calling nothing positive scores F1 = 0, never above the lowest threshold's, so the curve's
    # points (every distinct split of the scores) are all the candidates needed.
    thresholds, tp, fp = _curve(s, t)
    f1 = 2 * tp / (tp + fp + n_pos)  # 2 tp / (2 tp + fp + fn), fn = n_pos - tp
    return float(thresholds[np.argmax(f1)])  # argmax takes the first: highest threshold


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def binary_metrics(
    scores: ArrayLike, targets: ArrayLike, threshold: float
) -> dict[str, float | int]:
    """Confusion counts and rates when ``score >= threshold`` is called positive.

    Keys: ``tp fp tn fn`` (counts) and ``sensitivity`` (TPR), ``specificity``, ``fpr``, ``ppv``,
    ``npv``, ``f1``, ``accuracy``; a rate whose denominator is 0 is ``nan``.
    """
    s, t = as_binary_inputs(scores, targets, "binary_metrics")
    if np.isnan(threshold):
        raise ValueError("binary_metrics: threshold is NaN")
    predicted = s >= threshold
    tp = int(np.sum(predicted & t))
    fp = int(np.sum(predicted & ~t))
    fn = int(np.sum(~predicted & t))
    tn = int(np.sum(~predicted & ~t))
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "fpr": _ratio(fp, fp + tn),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, t.size),
    }
