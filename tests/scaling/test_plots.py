"""Scaling plots write <name>.png and <name>.json; the JSON holds the fitted parameters and the
plotted arrays, and each figure has one curve per model size / budget as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radfm_jax.scaling.fit import fit_joint, fit_power_law, isoflop_optimum
from radfm_jax.scaling.plots import save_compute_frontier, save_isoflop, save_residuals

SIZES = np.array([1e6, 4e6, 1.6e7])


def sweep() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three model sizes x five step counts, loss = 0.5 + 40 / N^0.3 + 15 / D^0.35."""
    n, steps = np.meshgrid(SIZES, [1e3, 3e3, 1e4, 3e4, 1e5], indexing="ij")
    n, d = n.ravel(), 32 * steps.ravel()
    flops = 6 * n * d
    return flops, n, d, 0.5 + 40 * n**-0.3 + 15 * d**-0.35


def read(out: Path, name: str) -> dict:
    assert Image.open(out / f"{name}.png").size[0] > 300
    return json.loads((out / f"{name}.json").read_text())


def test_compute_frontier(tmp_path: Path) -> None:
    flops, n, _, loss = sweep()
    fit = fit_power_law(flops, loss)
    figure = save_compute_frontier(tmp_path, "frontier", flops, n, loss, fit, metric_name="loss")
    # One line per model size plus the fitted law.
    assert len(figure.axes[0].lines) == len(SIZES) + 1
    numbers = read(tmp_path, "frontier")
    assert numbers["fit"] == {"kind": "PowerLawFit", "E": fit.E, "A": fit.A, "alpha": fit.alpha,
                              "log_E": fit.log_E, "log_A": fit.log_A, "transform": "identity",
                              "loss": fit.loss, "fixed": {}}
    assert [c["params"] for c in numbers["curves"]] == SIZES.tolist()
    smallest = numbers["curves"][0]
    assert smallest["flops"] == sorted(flops[n == SIZES[0]].tolist())
    np.testing.assert_allclose(smallest["metric"], loss[n == SIZES[0]][np.argsort(flops[n == SIZES[0]])])
    grid = np.array(numbers["fit_curve"]["flops"])
    assert grid.min() == pytest.approx(flops.min()) and grid.max() == pytest.approx(flops.max())
    np.testing.assert_allclose(numbers["fit_curve"]["metric"], fit.predict(grid))
    # The cheapest run is always on the frontier, and the frontier's loss only falls.
    assert numbers["frontier"]["flops"][0] == flops.min()
    assert np.all(np.diff(numbers["frontier"]["metric"]) < 0)


def test_isoflop(tmp_path: Path) -> None:
    """Sizes spanning two decades around sqrt(C / 6), near the optimum, except at the largest
    budget, trained only 30x below it: that optimum is extrapolated, and the figure says so."""
    flops, n, d = [], [], []
    for budget in (1e15, 1e16, 1e17):
        sizes = np.sqrt(budget / 6) * np.logspace(-1, 1, 5) / (30 if budget == 1e17 else 1)
        flops += [budget] * 5
        n += list(sizes)
        d += list(budget / (6 * sizes))
    flops, n, d = map(np.array, (flops, n, d))
    with pytest.warns(UserWarning, match="1 of 3 budgets"):
        result = isoflop_optimum(flops, n, d, 0.5 + 40 * n**-0.3 + 15 * d**-0.35)
    figure = save_isoflop(tmp_path, "isoflop", result, metric_name="loss")
    left, right = figure.axes
    assert len(left.lines) == 3  # one parabola per budget
    assert [text.get_text() for text in left.get_legend().get_texts()] == [
        "C=1e+15", "C=1e+16", "C=1e+17 (N* extrapolated)"]
    assert len(right.lines) == 2  # N* and D* power laws
    numbers = read(tmp_path, "isoflop")
    assert numbers["fit"]["n_exponent"] == result.n_exponent
    assert numbers["fit"]["d_exponent"] == result.d_exponent
    assert [b["budget"] for b in numbers["budgets"]] == pytest.approx([1e15, 1e16, 1e17])
    assert [b["in_range"] for b in numbers["budgets"]] == [True, True, False]
    assert numbers["fit"]["extrapolated"] == pytest.approx([1e17])
    first = numbers["budgets"][0]
    assert first["params"] == n[:5].tolist()
    assert first["n_opt"] == result.budgets[0].n_opt
    curve = first["curve"]
    np.testing.assert_allclose(curve["metric"], np.polyval(first["parabola"], np.log(curve["params"])))


def test_residuals_of_a_power_law_and_a_joint_fit(tmp_path: Path) -> None:
    flops, n, d, loss = sweep()
    fit = fit_power_law(flops, loss)
    figure = save_residuals(tmp_path, "power", fit, flops, loss, xlabel="FLOPs")
    assert len(figure.axes[0].lines) == 1  # the zero line; residuals are points
    numbers = read(tmp_path, "power")
    expected = np.log(fit.predict(flops)) - np.log(loss)
    np.testing.assert_allclose(numbers["residual"], expected)
    assert numbers["rms"] == pytest.approx(np.sqrt(np.mean(expected**2)))

    joint = fit_joint(n, d, 1 - loss / 4, increasing_metric=True, n_starts=8)
    save_residuals(tmp_path, "joint", joint, (n, d), 1 - loss / 4)
    numbers = read(tmp_path, "joint")
    assert numbers["fit"]["kind"] == "JointFit" and numbers["fit"]["transform"] == "one_minus"
    assert numbers["x"] == n.tolist()
    # Noiseless data from the law itself: residuals vanish.
    assert numbers["rms"] < 1e-3


def test_plot_name_must_be_a_file_stem(tmp_path: Path) -> None:
    flops, _, _, loss = sweep()
    with pytest.raises(ValueError, match="plain file stem"):
        save_residuals(tmp_path, "../escape", fit_power_law(flops, loss), flops, loss)
