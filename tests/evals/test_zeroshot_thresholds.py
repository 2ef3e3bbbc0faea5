"""Zero-shot metrics at a threshold: chosen on val and applied to the evaluated split (the honest
keys), against an independent NumPy computation; the test-tuned convention only under its own
keys and labelled in the printed table; and the evaluator's val scoring on a tiny CLIP model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radfm_jax.config.schema import MeshConfig
from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import plan_splits, sample_patients, sample_studies
from radfm_jax.data.findings import FINDINGS, NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN
from radfm_jax.data.tokenizer import train_tokenizer
from radfm_jax.errors import ConfigError
from radfm_jax.evals.evaluators.zeroshot_retrieval import ZeroshotRetrievalEvaluator, threshold_metrics
from radfm_jax.evals.operating_points import best_f1_threshold, binary_metrics, parse_operating_point
from radfm_jax.train.metric_writer import TEST_TUNED_LABEL, format_eval_table

NAMES = ("pleural_effusion", "pneumothorax", "cardiomegaly")
METRICS = ("f1", "accuracy", "precision", "sensitivity", "specificity")


def _splits(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(val scores, val labels, test scores, test labels) for NAMES. pleural_effusion: both
    splits separate the classes, but test scores sit 1.5 higher (a shift between splits), so a
    threshold tuned on test differs from val's; its uncertain rows all score just above the
    middle (they would move the thresholds if counted as negatives). pneumothorax has no
    positive in val, cardiomegaly no negative in test."""
    rng = np.random.default_rng(seed)

    def split(shift: float, pneumothorax: tuple[int, ...], cardiomegaly: tuple[int, ...]):
        labels = np.empty((n, len(NAMES)), np.int8)
        labels[:, 0] = rng.choice([POSITIVE, NEGATIVE, NOT_MENTIONED, UNCERTAIN], n, p=[0.3, 0.3, 0.3, 0.1])
        labels[:, 1] = rng.choice(pneumothorax, n)
        labels[:, 2] = rng.choice(cardiomegaly, n)
        scores = rng.normal(size=(n, len(NAMES))) + np.where(labels == POSITIVE, 1.0, -1.0) + shift
        scores[labels[:, 0] == UNCERTAIN, 0] = 0.5 + shift
        return scores, labels

    val_scores, val_labels = split(0.0, (NEGATIVE, NOT_MENTIONED, UNCERTAIN), (POSITIVE, NEGATIVE))
    test_scores, test_labels = split(1.5, (POSITIVE, NEGATIVE), (POSITIVE, UNCERTAIN))
    return val_scores, val_labels, test_scores, test_labels


def _committed(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = labels != UNCERTAIN
    return scores[keep], labels[keep] == POSITIVE


def _youden_reference(scores: np.ndarray, positive: np.ndarray) -> float:
    """The highest threshold among those maximising TPR - FPR, by trying every score."""
    candidates = np.unique(scores)[::-1]
    j = [np.mean(scores[positive] >= c) - np.mean(scores[~positive] >= c) for c in candidates]
    return float(candidates[int(np.argmax(j))])


def _at_reference(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, float]:
    called = scores >= threshold
    tp, fp = np.sum(called & positive), np.sum(called & ~positive)
    fn, tn = np.sum(~called & positive), np.sum(~called & ~positive)
    return {"f1": 2 * tp / (2 * tp + fp + fn), "accuracy": (tp + tn) / scores.size, "precision": tp / (tp + fp),
            "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp)}


def test_honest_metrics_use_the_val_threshold_and_match_numpy() -> None:
    val_scores, val_labels, scores, labels = _splits(seed=0)
    results = threshold_metrics(val_scores, val_labels, scores, labels, NAMES, "youden")
    threshold = _youden_reference(*_committed(val_scores[:, 0], val_labels[:, 0]))
    assert results["zeroshot/threshold/pleural_effusion"] == threshold
    expected = _at_reference(*_committed(scores[:, 0], labels[:, 0]), threshold)
    for metric in METRICS:
        assert results[f"zeroshot/{metric}/pleural_effusion"] == pytest.approx(expected[metric], abs=1e-12), metric
        # The only scorable finding: its value is the mean.
        assert results[f"zeroshot/{metric}_mean"] == results[f"zeroshot/{metric}/pleural_effusion"]
    # No positive in val / no negative in test: nan (null in the JSON file), as AUROC.
    for finding in ("pneumothorax", "cardiomegaly"):
        for name in ("threshold", *METRICS):
            assert math.isnan(results[f"zeroshot/{name}/{finding}"]), (finding, name)
    assert not any("test_tuned" in key for key in results)


def test_test_tuned_keys_only_when_asked_and_apart_from_the_honest_ones() -> None:
    val_scores, val_labels, scores, labels = _splits(seed=1)
    honest = threshold_metrics(val_scores, val_labels, scores, labels, NAMES, ("fpr", 0.1))
    both = threshold_metrics(val_scores, val_labels, scores, labels, NAMES, ("fpr", 0.1), test_tuned=True)
    # Asking for the test-tuned convention adds its own keys and changes none of the honest ones.
    tuned = {key: value for key, value in both.items() if key.startswith("zeroshot/test_tuned/")}
    assert {key: value for key, value in both.items() if key not in tuned} == pytest.approx(honest, nan_ok=True)
    assert set(tuned) == {key.replace("zeroshot/", "zeroshot/test_tuned/", 1) for key in honest}

    # The test-tuned threshold is the best F1 on the test split's committed labels, by trying
    # every score, and differs from val's (the test scores are shifted).
    s, positive = _committed(scores[:, 0], labels[:, 0])
    f1 = {c: _at_reference(s, positive, c)["f1"] for c in np.unique(s)}
    best = max(f1.values())
    assert tuned["zeroshot/test_tuned/threshold/pleural_effusion"] == max(c for c, v in f1.items() if v == best)
    assert tuned["zeroshot/test_tuned/f1/pleural_effusion"] == pytest.approx(best, abs=1e-12)
    assert tuned["zeroshot/test_tuned/threshold/pleural_effusion"] != honest["zeroshot/threshold/pleural_effusion"]
    assert math.isnan(tuned["zeroshot/test_tuned/f1/pneumothorax"])  # the same findings are skipped

    table = format_eval_table(both)
    for line in table.splitlines():
        assert (TEST_TUNED_LABEL in line) == ("/test_tuned/" in line), line
    assert sum(TEST_TUNED_LABEL in line for line in table.splitlines()) == len(tuned)


@pytest.mark.parametrize("rule", ["youden", ("fpr", 0.05), ("sensitivity", 0.9)])
@pytest.mark.parametrize("seed", range(5))
def test_test_tuned_f1_is_never_below_the_val_thresholds(rule, seed: int) -> None:
    val_scores, val_labels, scores, labels = _splits(seed, n=80)
    results = threshold_metrics(val_scores, val_labels, scores, labels, NAMES, rule, test_tuned=True)
    for finding in NAMES:
        honest, tuned = results[f"zeroshot/f1/{finding}"], results[f"zeroshot/test_tuned/f1/{finding}"]
        assert math.isnan(honest) == math.isnan(tuned)
        assert math.isnan(honest) or tuned >= honest
    assert results["zeroshot/test_tuned/f1_mean"] >= results["zeroshot/f1_mean"]


def test_best_f1_threshold_by_hand_and_against_every_cut() -> None:
    # Cuts at 0.9 / 0.8 (tie: one point) / 0.3 / 0.1 give F1 1/2, 2/3, 6/7, 3/4.
    assert best_f1_threshold([0.9, 0.8, 0.8, 0.3, 0.1], [1, 0, 1, 1, 0]) == 0.3
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 200) / 20.0  # many ties
    targets = rng.random(200) < 0.3 + 0.5 * scores
    best = binary_metrics(scores, targets, best_f1_threshold(scores, targets))["f1"]
    for cut in np.r_[np.linspace(-0.1, 1.1, 121), np.unique(scores)]:
        assert binary_metrics(scores, targets, cut)["f1"] <= best + 1e-12
    with pytest.raises(ValueError, match="positive"):
        best_f1_threshold([0.1, 0.2], [0, 0])


def test_operating_point_parsing_is_shared() -> None:
    from radfm_jax.evals.evaluators import classification

    assert classification.parse_operating_point is parse_operating_point
    assert parse_operating_point("fpr:0.1") == ("fpr", 0.1)
    with pytest.raises(ConfigError, match="eval.operating_point='f1'"):
        parse_operating_point("f1")


# --- the evaluator on a tiny CLIP model -------------------------------------------------------

def test_evaluator_scores_the_first_threshold_examples_of_val(toy_experiment, tmp_path) -> None:
    """Val = the evaluated rows followed by rows of another kind: with threshold_examples = the
    evaluated split's size, val's scores are the evaluated split's own (same model and prompts),
    so the honest metrics equal threshold_metrics of those scores against themselves."""
    n = 32
    plan = plan_splits({"train": 2 * n, "val": 0, "test": 0}, 3)["train"]
    studies = sample_studies(plan, sample_patients(int(plan.patient.max()) + 1, 3), np.random.default_rng([3, 1]), 3)
    reports, labels = write_reports(studies, np.random.default_rng([3, 2]))
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), "report": report, "labels": row,
                "patient_id": f"p{i}", "study_id": f"s{i}", "view": "PA", "sex": "F", "age": np.int32(50)}
               for i, (report, row) in enumerate(zip(reports, labels))]
    tokenizer = train_tokenizer(reports, 64, tmp_path / "tokenizer.model")
    exp = toy_experiment(MeshConfig(), batch_size=8, changes={
        "eval.batch_size": 16, "data.vocab_size": tokenizer.vocab_size, "eval.threshold_examples": n,
        "eval.test_tuned": True})
    params, cfg = exp.init_state().params, exp.config
    test, extra = records[:n], [{**r, "labels": np.full_like(r["labels"], POSITIVE)} for r in records[n:]]
    evaluator = ZeroshotRetrievalEvaluator(test, tokenizer, FINDINGS, exp.predictors(), exp.mesh, cfg.data,
                                           cfg.eval, val_source=test + extra)
    results = evaluator(params)
    assert results["zeroshot/threshold_examples"] == n
    expected = threshold_metrics(evaluator._scores, labels[:n], evaluator._scores, labels[:n], FINDINGS,
                                 "youden", test_tuned=True)
    assert {key: results[key] for key in expected} == pytest.approx(expected, nan_ok=True)
    assert sum(not math.isnan(results[f"zeroshot/f1/{f}"]) for f in FINDINGS) >= 3
    # Without a val split: AUROC and retrieval only.
    alone = ZeroshotRetrievalEvaluator(test, tokenizer, FINDINGS, exp.predictors(), exp.mesh, cfg.data, cfg.eval)
    plain = alone(params)
    assert not any(key.startswith(("zeroshot/f1", "zeroshot/test_tuned", "zeroshot/threshold")) for key in plain)
    assert plain["zeroshot/auroc_mean"] == pytest.approx(results["zeroshot/auroc_mean"], abs=1e-9)
