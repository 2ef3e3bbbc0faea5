"""`radfm finetune`, `radfm eval --compare` and `radfm adapt-sweep` as a user runs them (slow
tier): a tiny CLIP run, then each fine-tuning mode from its tower, evaluated with intervals,
operating points, calibration, subgroups and a robustness shift; the label-efficiency smoke."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import REPO, data_dir, error_message, radfm  # noqa: F401 (fixture)

from radfm_jax.data.findings import FINDINGS

pytestmark = pytest.mark.slow

FINETUNE = str(REPO / "experiments" / "synthetic_cxr" / "finetune.py")
SHORT = ["--set", "total_steps=6", "--set", "eval_every=6", "--set", "checkpoint_every=6", "--set",
         "optim.warmup_steps=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_dir) -> Path:
    workdir = tmp_path_factory.mktemp("clip") / "run"
    result = radfm("train", "--config", f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke",
                   "--workdir", str(workdir), "--set", "total_steps=4", "--set", "eval_every=0",
                   "--set", "checkpoint_every=4", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def _finetune(pretrained: Path, workdir: Path, mode: str, data_dir: Path, *extra: str):
    return radfm("finetune", "--from", str(pretrained), "--config", f"{FINETUNE}:{mode}-smoke", "--workdir",
                 str(workdir), *SHORT, *extra, data_dir=data_dir)


@pytest.fixture(scope="module")
def tuned(pretrained, tmp_path_factory, data_dir) -> dict[str, Path]:
    runs = {}
    for mode in ("linear", "lora", "partial", "full"):
        workdir = tmp_path_factory.mktemp(mode) / "run"
        extra = ["--set", "eval.bootstrap=50", "--set", "eval.evaluators=classification,robustness",
                 "--set", "eval.perturbations=gamma"] if mode == "lora" else []
        result = _finetune(pretrained, workdir, mode, data_dir, *extra)
        assert result.returncode == 0, result.stderr[-5000:]
        assert f"image tower from {pretrained}" in result.stderr
        runs[mode] = workdir
    return runs


def test_every_mode_fine_tunes_and_reports_the_clinical_evaluation(tuned):
    for mode, workdir in tuned.items():
        results = json.loads((workdir / "eval" / "step_00000006.json").read_text())
        for finding in FINDINGS:
            for metric in ("auroc", "auprc", "sensitivity", "specificity", "ece", "brier", "nll"):
                assert f"classification/{metric}/{finding}" in results, (mode, metric, finding)
        assert 0 <= results["classification/auroc_mean"] <= 1
        manifest = json.loads((workdir / "eval" / "step_00000006.manifest.json").read_text())
        assert manifest["checkpoint"]["step"] == 6 and manifest["evaluated_split"] == "test"
        assert manifest["thresholds_and_temperatures"].startswith("chosen on the val split")
        assert (workdir / "eval" / "step_00000006.reliability.png").stat().st_size > 0
        predictions = np.load(workdir / "eval" / "step_00000006.classification.predictions.npz")
        assert predictions["scores"].shape == (manifest["splits"]["test"]["studies"], len(FINDINGS))


def test_intervals_and_robustness_are_reported_when_asked(tuned):
    results = json.loads((tuned["lora"] / "eval" / "step_00000006.json").read_text())
    low, high = results["classification/auroc_mean/ci_low"], results["classification/auroc_mean/ci_high"]
    assert low <= results["classification/auroc_mean"] <= high
    assert {f"robustness/gamma/{s}/drop" for s in (1, 2, 3)} <= set(results)
    assert any(key.startswith("classification/subgroups/") and key.endswith("/sex/gap/tpr") for key in results)


def test_compare_two_runs_on_the_same_cases(tuned, data_dir):
    result = radfm("eval", "--compare", str(tuned["lora"]), str(tuned["full"]), data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-5000:]
    written = json.loads(next((tuned["lora"] / "eval").glob("compare_*.json")).read_text())
    for finding in FINDINGS:
        key = f"compare/auroc_diff/{finding}"
        if written[key] is not None:
            assert written[f"{key}/ci_low"] <= written[key] <= written[f"{key}/ci_high"]


def test_compare_refuses_runs_evaluated_on_different_studies(tuned, data_dir):
    result = radfm("eval", "--workdir", str(tuned["linear"]), "--set", "eval.max_examples=40", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-5000:]
    result = radfm("eval", "--compare", str(tuned["lora"]), str(tuned["linear"]), data_dir=data_dir)
    assert "refusing to compare" in error_message(result, "eval")
    # The earlier evaluation of the linear run was kept beside the new one, with its artifacts.
    assert len(list((tuned["linear"] / "eval").glob("step_00000006.2*.manifest.json"))) == 1


def test_a_label_fraction_without_positives_is_refused(pretrained, tmp_path, data_dir):
    result = _finetune(pretrained, tmp_path / "run", "linear", data_dir, "--set", "data.train_fraction=0.005")
    assert "no positive example of" in error_message(result, "finetune")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_label_efficiency_sweep_writes_its_table(pretrained, tmp_path, data_dir):
    spec = f"{REPO / 'experiments' / 'adapt' / 'synthetic_cxr_label_efficiency.py'}:smoke"
    result = radfm("adapt-sweep", spec, "--from", str(pretrained), "--root", str(tmp_path), data_dir=data_dir,
                   timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    table = json.loads((tmp_path / "label_efficiency.json").read_text())
    assert set(table["cells"]) == {"linear-smoke", "lora-smoke"} and table["fractions"] == ["0.5", "1"]
    assert (tmp_path / "label_efficiency.png").stat().st_size > 0
    assert "| lora-smoke |" in (tmp_path / "label_efficiency.md").read_text()
