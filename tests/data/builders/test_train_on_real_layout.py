"""End to end on a real data set's layout: `radfm train` builds mimic_cxr from a fake copy in the
published MIMIC-CXR-JPG layout, trains and evaluates over the CheXpert vocabulary."""

from __future__ import annotations

import json
import math

import pytest
from fake_data import make_mimic

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.datasets import open_prepared
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.errors import ConfigError
from radfm_jax.train.loop import train

pytestmark = pytest.mark.slow

MIMIC_SMOKE = "experiments/cxr/mimic_clip.py:smoke"


def _config(manual_dir, data_dir, *extra):
    return load_experiment(MIMIC_SMOKE, [
        f"data.manual_dir={manual_dir}", f"data.data_dir={data_dir}", "batch_size=8",
        "total_steps=2", "eval_every=2", "checkpoint_every=2", "log_every=1", "eval.batch_size=8",
        *extra])


def test_train_and_evaluate_on_mimic_layout(tmp_path):
    manual = tmp_path / "mimic-cxr-jpg"
    manual.mkdir()
    make_mimic(manual)
    results = train(_config(manual, tmp_path / "data"), tmp_path / "run")
    assert {f"zeroshot/auroc/{name}" for name in CHEXPERT_FINDINGS} <= set(results)
    assert results["eval/num_examples"] == 2  # the official test split's two frontal images
    assert not math.isnan(results["retrieval/i2t_recall@1"])
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2]


def test_a_build_recorded_with_another_preprocessing_spec_is_refused(tmp_path):
    manual = tmp_path / "mimic-cxr-jpg"
    manual.mkdir()
    make_mimic(manual)
    config = _config(manual, tmp_path / "data")
    prepared = open_prepared(config.data)
    # Simulate data prepared by another version of the preprocessing code in the same folder.
    metadata_file = prepared.directory / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["preprocess"]["resize"] = "crop" if metadata["preprocess"]["resize"] == "pad" else "pad"
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(ConfigError, match="resize"):
        open_prepared(config.data)
