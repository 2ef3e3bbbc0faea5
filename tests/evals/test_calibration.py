"""Calibration metrics vs naive loop references, and temperature scaling on known temperatures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from radfm_jax.evals.calibration import (
    apply_temperature,
    brier,
    ece,
    fit_temperature,
    nll,
    reliability_curve,
)
from radfm_jax.evals.plots import reliability_diagram


def _naive_ece(probs, targets, bins: list[list[int]]) -> float:
    """ECE from explicit lists of the indices in each bin, by plain loops."""
    total = 0.0
    for members in bins:
        if not members:
            continue
        mean_p = sum(probs[i] for i in members) / len(members)
        frequency = sum(targets[i] for i in members) / len(members)
        total += len(members) / len(probs) * abs(mean_p - frequency)
    return total


def _width_bins(probs, n_bins: int) -> list[list[int]]:
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    for i, p in enumerate(probs):
        for b in range(n_bins):
            low, high = b / n_bins, (b + 1) / n_bins
            if low <= p < high or (b == n_bins - 1 and p == 1.0):
                bins[b].append(i)
                break
    return bins


def _mass_bins(probs, n_bins: int) -> list[list[int]]:
    """For distinct probabilities and N divisible by n_bins: consecutive runs of N / n_bins in
    sorted order."""
    order = sorted(range(len(probs)), key=lambda i: probs[i])
    size = len(probs) // n_bins
    return [order[b * size : (b + 1) * size] for b in range(n_bins)]


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_naive_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.beta(0.7, 2.0, size=600)
    probs[:2] = [0.0, 1.0]  # both ends belong to a bin
    targets = rng.random(600) < np.clip(probs * 1.3, 0, 1)  # mis-calibrated on purpose
    for n_bins in (10, 15):
        expected_width = _naive_ece(probs, targets, _width_bins(probs, n_bins))
        assert ece(probs, targets, n_bins, "width") == pytest.approx(expected_width, abs=1e-12)
        expected_mass = _naive_ece(probs, targets, _mass_bins(probs, n_bins))
        assert ece(probs, targets, n_bins, "mass") == pytest.approx(expected_mass, abs=1e-12)
        assert ece(probs, targets, n_bins, "width") > 0.02


def test_ece_is_zero_for_perfectly_calibrated_bins() -> None:
    # Ten cases at each of 0.1, 0.3, 0.5, 0.9 with exactly 1, 3, 5, 9 positives.
    probs, targets = [], []
    for p in (0.1, 0.3, 0.5, 0.9):
        probs += [p] * 10
        targets += [1] * round(10 * p) + [0] * (10 - round(10 * p))
    assert ece(probs, targets, 15, "width") == pytest.approx(0.0, abs=1e-12)
    assert ece(probs, targets, 4, "mass") == pytest.approx(0.0, abs=1e-12)
    # Everyone at 0.8 but half positive: off by 0.3 in the one filled bin.
    assert ece([0.8] * 4, [1, 0, 1, 0]) == pytest.approx(0.3)


def test_reliability_curve_bins() -> None:
    curve = reliability_curve([0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1], n_bins=10)
    assert curve.counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert curve.mean_predicted[9] == pytest.approx(0.975)
    assert curve.observed_frequency.tolist()[:2] == [0.0, 1.0]
    assert np.isnan(curve.mean_predicted[2]) and np.isnan(curve.observed_frequency[2])
    mass = reliability_curve(np.linspace(0, 1, 100), np.arange(100) % 2, n_bins=5, strategy="mass")
    assert mass.counts.tolist() == [20] * 5


def test_brier_and_nll_match_naive_loops() -> None:
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.01, 0.99, size=200)
    targets = rng.random(200) < probs
    expected_brier = sum((p - y) ** 2 for p, y in zip(probs, targets)) / len(probs)
    expected_nll = -sum(math.log(p) if y else math.log(1 - p) for p, y in zip(probs, targets)) / 200
    assert brier(probs, targets) == pytest.approx(expected_brier, rel=1e-12)
    assert nll(probs, targets) == pytest.approx(expected_nll, rel=1e-12)


def test_nll_is_finite_for_confidently_wrong_probabilities() -> None:
    value = nll([0.0, 1.0], [1, 0])
    assert math.isfinite(value) and value == pytest.approx(-math.log(1e-7))
    assert nll([0.0, 1.0], [0, 1]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_temperature_scaling_recovers_a_known_temperature(true_temperature: float) -> None:
    rng = np.random.default_rng(int(true_temperature * 10))

    def split(n: int):
        logits = rng.normal(0.0, 3.0, size=n)
        return logits, rng.random(n) < expit(logits / true_temperature)

    fit_logits, fit_targets = split(100_000)
    val_logits, val_targets = split(50_000)
    fitted = fit_temperature(fit_logits, fit_targets)
    assert fitted == pytest.approx(true_temperature, rel=0.04)
    raw, scaled = expit(val_logits), apply_temperature(val_logits, fitted)
    for strategy in ("width", "mass"):
        before = ece(raw, val_targets, strategy=strategy)
        assert ece(scaled, val_targets, strategy=strategy) < 0.3 * before
    assert nll(scaled, val_targets) < nll(raw, val_targets)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([0.2, 1.2], [0, 1])
    with pytest.raises(ValueError, match="strategy"):
        ece([0.2, 0.8], [0, 1], strategy="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        reliability_curve([0.2, 0.8], [0, 1], n_bins=0)
    with pytest.raises(ValueError, match="both"):
        fit_temperature([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        apply_temperature([1.0], 0.0)


def test_reliability_diagram_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random(300)
    curves = {name: reliability_curve(probs, rng.random(300) < probs ** power, 10)
              for name, power in (("effusion", 1.0), ("pneumothorax", 2.0))}
    path = reliability_diagram(curves, tmp_path / "figures" / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
