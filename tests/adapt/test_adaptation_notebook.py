"""Executes notebooks/adaptation.ipynb with nbclient: on the shipped example results (the README's
label-efficiency sweep and shifted LoRA run), and on an evaluation folder made here from logits of
known calibration, where temperature scaling must remove the mis-calibration it was built with."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from radfm_jax.evals import calibration
from radfm_jax.evals.evaluators.predictions import write_predictions
from radfm_jax.evals.subgroups import subgroup_report

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "adaptation.ipynb"
EXAMPLE = REPO / "notebooks" / "adaptation_example"


def run_notebook(out: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    monkeypatch.setenv("RADFM_ADAPTATION_OUT", str(out))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return json.loads((out / "summary.json").read_text())


def test_notebook_on_the_example_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is the sweep's; the test ECE recomputed from the saved logits and the
    validation temperatures equals the one the evaluator reported; figures are written."""
    monkeypatch.delenv("RADFM_LABEL_EFFICIENCY", raising=False)
    monkeypatch.delenv("RADFM_FINETUNE_EVAL", raising=False)
    summary = run_notebook(tmp_path, monkeypatch)
    table = json.loads((EXAMPLE / "label_efficiency.json").read_text())
    for mode, cells in table["cells"].items():
        for fraction, cell in cells.items():
            assert summary["label_efficiency"][mode][fraction] == pytest.approx(np.mean(cell["values"]))
    assert len(summary["calibration"]) >= 5
    for finding in summary["calibration"].values():
        assert finding["ece_after"] == pytest.approx(finding["ece_reported"], abs=1e-9)
    assert summary["subgroup_sex_tpr_gap"]
    for name in ("label_efficiency.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert list(tmp_path.glob("subgroups.*.png"))


def test_notebook_undoes_a_known_miscalibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels drawn from sigmoid(z), logits saved as 3 z with temperature 3: the notebook's ECE
    after scaling is that of the true probabilities, far below the over-confident one."""
    rng = np.random.default_rng(0)
    n, names = 4000, ["effusion", "nodule"]
    z = rng.normal(0.0, 2.0, size=(n, 2))
    labels = (rng.random((n, 2)) < 1 / (1 + np.exp(-z))).astype(np.int8)
    patients = np.array([f"p{i // 2}" for i in range(n)])
    metadata = {"patient_id": patients, "study_id": np.array([f"s{i}" for i in range(n)]),
                "sex": np.where(np.arange(n) % 4 < 2, "F", "M")}
    folder = tmp_path / "eval"
    folder.mkdir()
    write_predictions(folder / "step_00000010.classification.predictions.npz", "classification", 3 * z,
                      labels, metadata, names)
    metrics = {}
    for i, name in enumerate(names):
        metrics[f"classification/temperature/{name}"] = 3.0
        metrics[f"classification/ece/{name}"] = calibration.ece(1 / (1 + np.exp(-z[:, i])), labels[:, i])
    (folder / "step_00000010.json").write_text(json.dumps(metrics))
    report = {name: subgroup_report(3 * z[:, i], labels[:, i], patients, {"sex": metadata["sex"]}, 0.0,
                                    n_resamples=50) for i, name in enumerate(names)}
    (folder / "step_00000010.subgroups.json").write_text(json.dumps(report))
    summary = run_notebook(tmp_path / "out", monkeypatch, RADFM_FINETUNE_EVAL=str(folder),
                           RADFM_LABEL_EFFICIENCY=str(EXAMPLE / "label_efficiency.json"))
    for i, name in enumerate(names):
        result = summary["calibration"][name]
        assert result["ece_after"] == pytest.approx(metrics[f"classification/ece/{name}"], abs=1e-12)
        assert result["ece_after"] < 0.03 < 0.08 < result["ece_before"]
        assert summary["subgroup_sex_tpr_gap"][name]["gap"] == report[name]["sex/gap/tpr"]
