"""Executes notebooks/scaling_laws.ipynb with nbclient on synthetic sweep tables drawn from known
laws, and checks that it writes its figures and recovers the laws' exponents.

`make_isoflop_rows` also generated the committed example table notebooks/example_sweep.csv;
`test_example_table_is_reproducible` keeps the file and the documented law in step.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "scaling_laws.ipynb"
EXAMPLE_TABLE = REPO / "notebooks" / "example_sweep.csv"

# loss = E + A / N^alpha + B / D^beta and 1 - AUROC = the same form with other constants.
LOSS_LAW = {"E": 0.8, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.36}
AUROC_ERROR_LAW = {"E": 0.05, "A": 8.0, "alpha": 0.28, "B": 3.0, "beta": 0.33}
TOKENS_PER_STUDY = 64  # flops per example = 6 * params * tokens
BATCH = 32
COLUMNS = (
    "point", "params", "data_size", "steps", "examples_seen", "flops_per_step",
    "compiled_flops_per_step", "total_flops", "wall_time_s", "loss", "zeroshot/auroc_mean",
)


def _law(law: dict[str, float], n: float, d: float) -> float:
    return law["E"] + law["A"] * n ** -law["alpha"] + law["B"] * d ** -law["beta"]


def _row(name: str, params: int, steps: int, rng: np.random.Generator, noise: float) -> dict:
    flops_per_step = 6 * params * TOKENS_PER_STUDY * BATCH
    examples = steps * BATCH  # one epoch: every study is seen once
    return {
        "point": name, "params": params, "data_size": examples, "steps": steps,
        "examples_seen": examples, "flops_per_step": flops_per_step,
        "compiled_flops_per_step": "", "total_flops": flops_per_step * steps,
        "wall_time_s": round(flops_per_step * steps / 1e12, 3),  # a nominal 1 TFLOP/s
        "loss": round(_law(LOSS_LAW, params, examples) * (1 + noise * rng.normal()), 6),
        "zeroshot/auroc_mean": round(
            1 - _law(AUROC_ERROR_LAW, params, examples) * (1 + noise * rng.normal()), 6
        ),
    }


def optimal_params_exponent(law: dict[str, float]) -> float:
    """N* ~ C^(beta / (alpha + beta)) for L = E + A/N^alpha + B/D^beta at fixed C ~ N D."""
    return law["beta"] / (law["alpha"] + law["beta"])


def make_isoflop_rows(seed: int = 0, noise: float = 0.01) -> list[dict]:
    """Five FLOPs budgets, each trained at the 7 sizes of a fixed model zoo nearest its
    compute-optimal size (as a designer with a prior estimate would pick them)."""
    rng = np.random.default_rng(seed)
    zoo = np.logspace(5.5, 8.5, 13)
    law = LOSS_LAW
    spread = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
    rows = []
    for b, budget in enumerate(np.logspace(14, 16, 5)):
        optimum = spread * (budget / (6 * TOKENS_PER_STUDY)) ** optimal_params_exponent(law)
        sizes = zoo[np.argsort(np.abs(np.log(zoo / optimum)))[:7]]
        for s, size in enumerate(sorted(sizes)):
            params = int(size)
            steps = round(budget / (6 * params * TOKENS_PER_STUDY * BATCH))
            rows.append(_row(f"c{b}_n{s}", params, steps, rng, noise))
    return rows


def make_factorial_rows(seed: int = 1, noise: float = 0.01) -> list[dict]:
    """A 5 x 4 grid of model sizes x data sizes; products never coincide, so no IsoFLOP budget."""
    rng = np.random.default_rng(seed)
    return [
        _row(f"n{i}_d{j}", int(1e6 * 3**i), int(2e3 * 5**j) // BATCH, rng, noise)
        for i in range(5)
        for j in range(4)
    ]


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run_notebook(table: Path, out: Path, metric: str, monkeypatch: pytest.MonkeyPatch,
                 direction: str | None = None, fixed: str | None = None) -> dict:
    monkeypatch.setenv("RADFM_SWEEP_TABLE", str(table))
    monkeypatch.setenv("RADFM_SCALING_OUT", str(out))
    monkeypatch.setenv("RADFM_SCALING_METRIC", metric)
    for name in ("RADFM_SCALING_N_BOOT", "RADFM_SCALING_CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("RADFM_SCALING_DIRECTION", direction), ("RADFM_SCALING_FIXED", fixed)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    return json.loads((out / "fits.json").read_text())


def test_example_table_is_reproducible(tmp_path: Path) -> None:
    write_csv(make_isoflop_rows(), tmp_path / "example.csv")
    assert (tmp_path / "example.csv").read_text() == EXAMPLE_TABLE.read_text()


def test_notebook_recovers_the_example_law(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Example table (loss, 1% noise): joint alpha, beta within 0.1 of the law; the IsoFLOP
    exponent of N* ~ C^a and the compute frontier's exponent within 0.05 of the law's; the
    joint law's prediction at 10x the largest N and D within 5% of the law; figures written."""
    fits = run_notebook(EXAMPLE_TABLE, tmp_path, "loss", monkeypatch, "decreasing")
    assert fits["metric"] == "loss" and fits["increasing_metric"] is False
    # Along the compute frontier L*(C) - E ~ C^-(alpha beta / (alpha + beta)) (Chinchilla eq. 4).
    frontier_exponent = LOSS_LAW["alpha"] * optimal_params_exponent(LOSS_LAW)
    assert fits["power_laws"]["compute"]["alpha"] == pytest.approx(frontier_exponent, abs=0.05)
    assert fits["joint"]["alpha"] == pytest.approx(LOSS_LAW["alpha"], abs=0.1)
    assert fits["joint"]["beta"] == pytest.approx(LOSS_LAW["beta"], abs=0.1)
    lo, hi = fits["joint"]["intervals"]["alpha"]
    assert lo <= fits["joint"]["alpha"] <= hi
    assert fits["isoflop"]["n_exponent"] == pytest.approx(optimal_params_exponent(LOSS_LAW), abs=0.05)
    assert fits["isoflop"]["extrapolated_budgets"] == []  # sizes were chosen around each optimum
    assert fits["joint"]["fixed"] == {} and isinstance(fits["joint"]["bootstrap_failed"], int)
    assert fits["isoflop"]["d_exponent"] == pytest.approx(1 - optimal_params_exponent(LOSS_LAW), abs=0.05)
    for name in ("compute_frontier", "isoflop", "joint_residuals", "params_residuals"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        numbers = json.loads((tmp_path / f"{name}.json").read_text())
        assert "fit" in numbers
    isoflop = json.loads((tmp_path / "isoflop.json").read_text())
    assert isoflop["fit"]["n_exponent"] == fits["isoflop"]["n_exponent"]
    assert len(isoflop["budgets"]) == 5
    prediction = fits["extrapolation"]
    truth = _law(LOSS_LAW, prediction["params"], prediction["data_size"])
    assert prediction["low"] <= prediction["prediction"] <= prediction["high"]
    assert prediction["prediction"] == pytest.approx(truth, rel=0.05)


def test_notebook_on_a_factorial_auroc_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSONL table of an N x D grid, metric AUROC (fitted as 1 - AUROC): joint alpha, beta
    within 0.1 of the law; IsoFLOP is skipped with its reason, since no budget repeats."""
    table = tmp_path / "sweep.jsonl"
    table.write_text("".join(json.dumps(row) + "\n" for row in make_factorial_rows()))
    out = tmp_path / "figures"
    fits = run_notebook(table, out, "zeroshot/auroc_mean", monkeypatch, "increasing")
    assert fits["increasing_metric"] is True
    assert fits["joint"]["transform"] == "one_minus"
    assert fits["joint"]["alpha"] == pytest.approx(AUROC_ERROR_LAW["alpha"], abs=0.1)
    assert fits["joint"]["beta"] == pytest.approx(AUROC_ERROR_LAW["beta"], abs=0.1)
    assert "budgets" in fits["isoflop"]["skipped"]
    assert not (out / "isoflop.png").exists()
    assert (out / "compute_frontier.png").exists() and (out / "joint_residuals.json").exists()
    prediction = fits["extrapolation"]
    assert prediction["low"] <= prediction["prediction"] <= prediction["high"]
    assert 0 < prediction["prediction"] < 1 and math.isfinite(prediction["high"])


def make_extrapolated_rows() -> list[dict]:
    """The example table with the largest budget (1e16) retrained at the zoo's 7 smallest sizes,
    all below its compute-optimal size, so that its IsoFLOP optimum lies beyond them."""
    rng = np.random.default_rng(2)
    rows = [row for row in make_isoflop_rows() if not row["point"].startswith("c4_")]
    for s, size in enumerate(np.logspace(5.5, 8.5, 13)[:7]):
        params = int(size)
        steps = round(1e16 / (6 * params * TOKENS_PER_STUDY * BATCH))
        rows.append(_row(f"c4_n{s}", params, steps, rng, 0.01))
    return rows


def test_notebook_with_E_fixed_and_an_extrapolated_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RADFM_SCALING_FIXED=E=0.8 (the law's floor) holds E in the joint fit: reported as fixed,
    without an interval, and alpha, beta still within 0.1 of the law. The budget trained only
    below its optimum is listed as extrapolated in fits.json and in the IsoFLOP figure's numbers."""
    write_csv(make_extrapolated_rows(), tmp_path / "sweep.csv")
    out = tmp_path / "figures"
    fits = run_notebook(tmp_path / "sweep.csv", out, "loss", monkeypatch, "decreasing", fixed="E=0.8")
    joint = fits["joint"]
    assert joint["fixed"] == {"E": 0.8} and joint["E"] == pytest.approx(0.8)
    assert set(joint["intervals"]) == {"A", "alpha", "B", "beta"}
    assert joint["alpha"] == pytest.approx(LOSS_LAW["alpha"], abs=0.1)
    assert joint["beta"] == pytest.approx(LOSS_LAW["beta"], abs=0.1)
    assert fits["isoflop"]["extrapolated_budgets"] == [pytest.approx(1e16, rel=0.05)]
    # Best loss per data size is U-shaped here (the largest data sizes belong to the smallest
    # models): that envelope is refused and reported, the others are fitted.
    assert "does not fall" in fits["power_laws"]["data_size"]["skipped"]
    assert fits["power_laws"]["params"]["kind"] == "PowerLawFit"
    isoflop = json.loads((out / "isoflop.json").read_text())
    assert [b["in_range"] for b in isoflop["budgets"]] == [True, True, True, True, False]
    assert isoflop["fit"]["extrapolated"] == fits["isoflop"]["extrapolated_budgets"]


def test_notebook_asks_for_the_metrics_direction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chosen metric without RADFM_SCALING_DIRECTION is refused, not guessed from its name."""
    with pytest.raises(CellExecutionError, match="RADFM_SCALING_DIRECTION"):
        run_notebook(EXAMPLE_TABLE, tmp_path, "error_rate", monkeypatch)
