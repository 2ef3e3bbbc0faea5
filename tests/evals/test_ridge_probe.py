"""Closed-form linear probe vs scikit-learn's Ridge, on synthetic problems with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from radfm_jax.errors import ConfigError
from radfm_jax.evals.ridge_probe import fit_linear_probe, linear_probe_metrics

POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED = 1, 0, -1, -2


def _chexpert_labels(truth: np.ndarray, rng: np.random.Generator, uncertain_rate: float) -> np.ndarray:
    """CheXpert values from boolean truth: negatives split between 0 and -2 (both count as
    negative), and a random share of every column marked uncertain (different rows per column)."""
    labels = np.where(truth, POSITIVE, rng.choice([NEGATIVE, NOT_MENTIONED], size=truth.shape))
    labels[rng.random(truth.shape) < uncertain_rate] = UNCERTAIN
    return labels.astype(np.int8)


def _linear_findings(n: int, weights: np.ndarray, rng: np.random.Generator, noise: float):
    """Gaussian features, finding j positive when features @ weights[:, j] + noise > 0."""
    features = rng.normal(size=(n, weights.shape[0]))
    latent = features @ weights + noise * rng.normal(size=(n, weights.shape[1]))
    return features, latent > 0


def _train_and_test(n_train: int, n_test: int, weights: np.ndarray, rng: np.random.Generator, *, noise: float,
                    uncertain_rate: float):
    """(train features, train labels, test features, test labels) of _linear_findings, labelled
    by _chexpert_labels (drawn in that order from `rng`)."""
    train_x, train_truth = _linear_findings(n_train, weights, rng, noise=noise)
    test_x, test_truth = _linear_findings(n_test, weights, rng, noise=noise)
    train_labels = _chexpert_labels(train_truth, rng, uncertain_rate=uncertain_rate)
    test_labels = _chexpert_labels(test_truth, rng, uncertain_rate=uncertain_rate)
    return train_x, train_labels, test_x, test_labels


# ---------------------------------------------------------------- the ridge solution itself
@pytest.mark.parametrize("n, dims", [(300, 20), (40, 60)])  # well- and under-determined
@pytest.mark.parametrize("l2", [0.1, 1.0, 30.0])
def test_fixed_l2_matches_sklearn_ridge(n: int, dims: int, l2: float) -> None:
    rng = np.random.default_rng(dims)
    features = rng.normal(size=(n, dims)) * rng.uniform(0.1, 5.0, size=dims) + rng.normal(size=dims)
    truth = rng.random((n, 3)) < 0.4
    labels = _chexpert_labels(truth, rng, uncertain_rate=0.1)
    labels[: int(0.7 * n), 2] = UNCERTAIN  # most rows dropped: the Gram is built from kept rows
    labels[int(0.7 * n) :: 2, 2] = POSITIVE
    labels[int(0.7 * n) + 1 :: 2, 2] = NOT_MENTIONED

    probe = fit_linear_probe(features, labels, l2_grid=(l2,))

    standardised = StandardScaler().fit_transform(features)  # statistics over all training rows
    for j in range(labels.shape[1]):
        committed = labels[:, j] != UNCERTAIN
        signed = np.where(labels[committed, j] == POSITIVE, 1.0, -1.0)
        reference = Ridge(alpha=l2, fit_intercept=True).fit(standardised[committed], signed)
        np.testing.assert_allclose(probe.weights[:, j], reference.coef_, rtol=1e-6, atol=1e-6)
        assert probe.bias[j] == pytest.approx(reference.intercept_, abs=1e-6)
        np.testing.assert_allclose(probe.scores(features)[:, j], reference.predict(standardised), atol=1e-6)
    np.testing.assert_array_equal(probe.l2, [l2] * 3)
    assert probe.skip_reasons == {}


def test_chosen_l2_is_refitted_on_all_committed_rows() -> None:
    rng = np.random.default_rng(3)
    features, truth = _linear_findings(400, rng.normal(size=(30, 3)) / 5, rng, noise=1.0)
    labels = _chexpert_labels(truth, rng, uncertain_rate=0.2)

    probe = fit_linear_probe(features, labels, seed=1)

    standardised = StandardScaler().fit_transform(features)
    for j in range(labels.shape[1]):
        committed = labels[:, j] != UNCERTAIN
        signed = np.where(labels[committed, j] == POSITIVE, 1.0, -1.0)
        reference = Ridge(alpha=probe.l2[j]).fit(standardised[committed], signed)
        np.testing.assert_allclose(probe.weights[:, j], reference.coef_, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- end to end on known signals
def test_linear_findings_are_found_and_noise_is_at_chance() -> None:
    rng = np.random.default_rng(0)
    dims = 32
    weights = np.zeros((dims, 3))
    weights[:, 0] = rng.normal(size=dims)  # dense signal
    weights[3, 1] = 1.0  # one feature
    weights[4, 1] = -0.5
    # finding 2: pure noise, independent of the features
    train_x, train_truth = _linear_findings(3000, weights, rng, noise=0.3)
    test_x, test_truth = _linear_findings(3000, weights, rng, noise=0.3)
    train_truth[:, 2] = rng.random(3000) < 0.5
    test_truth[:, 2] = rng.random(3000) < 0.5
    train_labels = _chexpert_labels(train_truth, rng, uncertain_rate=0.1)
    test_labels = _chexpert_labels(test_truth, rng, uncertain_rate=0.1)
    names = ["dense", "sparse", "noise"]

    probe = fit_linear_probe(train_x, train_labels)
    metrics = linear_probe_metrics(probe, test_x, test_labels, names)

    assert metrics["linear_probe/auroc/dense"] > 0.95
    assert metrics["linear_probe/auroc/sparse"] > 0.95
    # Null AUROC standard deviation (Hanley & McNeil): sqrt((n1 + n0 + 1) / (12 n1 n0)).
    committed = test_labels[:, 2] != UNCERTAIN
    n1 = int((test_labels[committed, 2] == POSITIVE).sum())
    n0 = int(committed.sum()) - n1
    null_sd = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
    assert abs(metrics["linear_probe/auroc/noise"] - 0.5) < 4 * null_sd

    # The reported numbers are sklearn's AUROC of the probe scores on committed rows.
    scores = probe.scores(test_x)
    expected = []
    for j, name in enumerate(names):
        committed = test_labels[:, j] != UNCERTAIN
        value = roc_auc_score(test_labels[committed, j] == POSITIVE, scores[committed, j])
        assert metrics[f"linear_probe/auroc/{name}"] == pytest.approx(value, abs=1e-12)
        expected.append(value)
    assert metrics["linear_probe/auroc_mean"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert set(metrics) == {f"linear_probe/auroc/{name}" for name in names} | {"linear_probe/auroc_mean"}


# ---------------------------------------------------------------- uncertain rows
def test_uncertain_rows_do_not_enter_fit_or_score() -> None:
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(12, 2))
    features, truth = _linear_findings(600, weights, rng, noise=1.0)
    labels = _chexpert_labels(truth, rng, uncertain_rate=0.15)
    test_x, test_truth = _linear_findings(400, weights, rng, noise=1.0)
    test_labels = _chexpert_labels(test_truth, rng, uncertain_rate=0.15)

    # Shuffle each feature column independently among finding 0's uncertain rows: every
    # column's mean and spread over all rows stay exactly the same (so the standardisation
    # does), but those rows' feature vectors, and so anything fitted on them, change.
    unsure = np.flatnonzero(labels[:, 0] == UNCERTAIN)
    shuffled = features.copy()
    for d in range(features.shape[1]):
        shuffled[unsure, d] = features[rng.permutation(unsure), d]
    # In the test split, reverse the features of finding 0's uncertain rows.
    test_unsure = test_labels[:, 0] == UNCERTAIN
    flipped_test_x = np.where(test_unsure[:, None], -test_x, test_x)

    original = fit_linear_probe(features, labels)
    perturbed = fit_linear_probe(shuffled, labels)

    np.testing.assert_allclose(perturbed.mean, original.mean, atol=1e-12)
    np.testing.assert_allclose(perturbed.scale, original.scale, atol=1e-12)
    np.testing.assert_allclose(perturbed.weights[:, 0], original.weights[:, 0], atol=1e-10)
    assert perturbed.bias[0] == pytest.approx(original.bias[0], abs=1e-10)
    assert perturbed.l2[0] == original.l2[0]
    # Finding 1 does train on those rows, so the perturbation is visible there.
    assert np.abs(perturbed.weights[:, 1] - original.weights[:, 1]).max() > 1e-3

    names = ["a", "b"]
    before = linear_probe_metrics(original, test_x, test_labels, names)
    after = linear_probe_metrics(perturbed, flipped_test_x, test_labels, names)
    assert after["linear_probe/auroc/a"] == pytest.approx(before["linear_probe/auroc/a"], abs=1e-12)
    assert after["linear_probe/auroc/b"] != before["linear_probe/auroc/b"]


# ---------------------------------------------------------------- choosing the strength
GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@pytest.mark.parametrize("seed", range(3))
def test_noisy_high_dimensional_problem_gets_strong_l2(seed: int) -> None:
    """As many dims as fitting rows (400 of 500 rows; 100 held out), a dense signal under equal
    noise: least squares at the interpolation threshold chases the noise. (With far more dims
    than rows every strength up to 100 gives the same scores up to scale, so there is no choice
    to test there.)"""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(400, 1)) / math.sqrt(400)
    features, truth = _linear_findings(500, weights, rng, noise=1.0)
    labels = np.where(truth, POSITIVE, NEGATIVE).astype(np.int8)

    probe = fit_linear_probe(features, labels, l2_grid=GRID, seed=seed)

    assert probe.l2[0] >= 10.0


@pytest.mark.parametrize("seed", range(3))
def test_well_determined_problem_gets_weak_l2(seed: int) -> None:
    """2,000 rows, 12 dims, two nearly collinear features whose small difference is the signal:
    a real penalty shrinks exactly the direction that separates the classes, below the noise
    picked up by ten irrelevant features."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=2000)
    detail = rng.normal(size=2000)
    features = np.column_stack([base, base + 0.003 * detail, rng.normal(size=(2000, 10))])
    truth = detail + 0.05 * rng.normal(size=2000) > 0
    labels = np.where(truth, POSITIVE, NEGATIVE)[:, None].astype(np.int8)

    probe = fit_linear_probe(features, labels, l2_grid=GRID, seed=seed)

    assert probe.l2[0] <= 1e-2


def test_same_seed_same_probe_other_seed_other_split() -> None:
    rng = np.random.default_rng(5)
    features, truth = _linear_findings(120, rng.normal(size=(50, 4)) / 7, rng, noise=1.0)
    labels = _chexpert_labels(truth, rng, uncertain_rate=0.1)

    first = fit_linear_probe(features, labels, seed=3)
    again = fit_linear_probe(features, labels, seed=3)

    np.testing.assert_array_equal(first.weights, again.weights)
    np.testing.assert_array_equal(first.l2, again.l2)
    choices = {tuple(fit_linear_probe(features, labels, seed=s).l2) for s in range(8)}
    assert len(choices) > 1  # the held-out rows, and so some choices, depend on the seed


# ---------------------------------------------------------------- skipped findings
def test_single_class_finding_is_nan_and_left_out_of_the_mean() -> None:
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(8, 3))
    train_x, train_labels, test_x, test_labels = _train_and_test(500, 500, weights, rng, noise=0.5,
                                                                 uncertain_rate=0.1)
    train_labels[:, 1] = np.where(train_labels[:, 1] == POSITIVE, UNCERTAIN, train_labels[:, 1])

    probe = fit_linear_probe(train_x, train_labels)
    metrics = linear_probe_metrics(probe, test_x, test_labels, ["a", "never_positive", "c"])

    assert set(probe.skip_reasons) == {1}
    assert "single class" in probe.skip_reasons[1]
    assert np.all(np.isnan(probe.scores(test_x)[:, 1]))
    assert np.isnan(probe.l2[1])
    assert math.isnan(metrics["linear_probe/auroc/never_positive"])
    scores = probe.scores(test_x)
    expected = [
        roc_auc_score(test_labels[keep, j] == POSITIVE, scores[keep, j])
        for j in (0, 2)
        for keep in [test_labels[:, j] != UNCERTAIN]
    ]
    assert metrics["linear_probe/auroc_mean"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_single_class_in_the_test_split_is_nan_too() -> None:
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(6, 2))
    train_x, train_labels, test_x, test_labels = _train_and_test(300, 200, weights, rng, noise=0.5,
                                                                 uncertain_rate=0.0)
    test_labels[:, 1] = NEGATIVE

    probe = fit_linear_probe(train_x, train_labels)
    metrics = linear_probe_metrics(probe, test_x, test_labels, ["a", "b"])

    assert math.isnan(metrics["linear_probe/auroc/b"])
    assert metrics["linear_probe/auroc_mean"] == metrics["linear_probe/auroc/a"]


def test_one_positive_is_enough_to_fit_but_not_to_choose_l2() -> None:
    rng = np.random.default_rng(6)
    features = rng.normal(size=(50, 4))
    labels = np.zeros((50, 1), dtype=np.int8)
    labels[7, 0] = POSITIVE

    choosing = fit_linear_probe(features, labels)
    fixed = fit_linear_probe(features, labels, l2_grid=(1.0,))

    assert "single-value l2_grid" in choosing.skip_reasons[0]
    assert fixed.skip_reasons == {}
    assert np.all(np.isfinite(fixed.scores(features)))


# ---------------------------------------------------------------- bad input
def _good() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 3)), np.tile(np.array([[1], [0]], dtype=np.int8), (10, 2))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda x, y: (x[:, 0], y), r"train_features must be \(N, D\)"),
        (lambda x, y: (x[:0], y[:0]), "train_features is empty"),
        (lambda x, y: (x[:, :0], y), "train_features is empty"),
        (lambda x, y: (np.where(np.arange(20)[:, None] == 4, np.nan, x), y), "NaN or inf in 1 rows"),
        (lambda x, y: (np.where(np.arange(20)[:, None] == 4, np.inf, x), y), "NaN or inf"),
        (lambda x, y: (x, y[:-1]), "train_labels have 19 rows but the features 20"),
        (lambda x, y: (x, y[:, 0]), r"train_labels must be \(N, F\)"),
        (lambda x, y: (x, y[:, :0]), "no finding columns"),
        (lambda x, y: (x, np.where(y == 1, 2, y)), r"values \[2\]"),
    ],
)
def test_bad_training_input_is_named(change, match: str) -> None:
    features, labels = change(*_good())
    with pytest.raises(ValueError, match=match):
        fit_linear_probe(features, labels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l2_grid": ()}, "l2_grid is empty"),
        ({"l2_grid": (1.0, 0.0)}, "finite and > 0"),
        ({"l2_grid": (1.0, -1.0)}, "finite and > 0"),
        ({"l2_grid": (1.0, float("nan"))}, "finite and > 0"),
        ({"l2_grid": (1.0, 1.0)}, "repeated"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fit_linear_probe(*_good(), **kwargs)


def test_bad_evaluation_input_is_named() -> None:
    features, labels = _good()
    probe = fit_linear_probe(features, labels)
    with pytest.raises(ValueError, match="features have 2 dimensions but the probe was fitted on 3"):
        probe.scores(features[:, :2])
    with pytest.raises(ValueError, match="3 label names for a probe of 2 findings"):
        linear_probe_metrics(probe, features, labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="test_labels have 1 findings, the probe 2"):
        linear_probe_metrics(probe, features, labels[:, :1], ["a", "b"])
    with pytest.raises(ValueError, match="test_labels have 19 rows"):
        linear_probe_metrics(probe, features, labels[:-1], ["a", "b"])
    with pytest.raises(ValueError, match="features contain NaN"):
        linear_probe_metrics(probe, np.full_like(features, np.nan), labels, ["a", "b"])
