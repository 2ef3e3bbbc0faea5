"""3D volumes through `radfm train` as a user runs it (slow tier): each synthetic_ct
experiment's `:smoke` builds the data set, trains vit3d on (D, H, W, 2-window) volumes and
evaluates with the objective's evaluator; the CT-RATE recipe's variants plan on the published
geometry without data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import REPO, radfm

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.builders.ct_rate.tables import LABEL_NAMES
from radfm_jax.objectives.base import image_channels, image_shape

RENDERED = ("cardiomegaly", "pericardial_effusion", "lymphadenopathy", "emphysema", "lung_nodule",
            "consolidation", "pleural_effusion")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ct_data")


def _last_eval(workdir: Path) -> dict:
    (latest, *_) = sorted((workdir / "eval").glob("step_*[0-9].json"), reverse=True)
    return json.loads(latest.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("experiment, evaluated", [
    ("clip", "zeroshot/auroc/"), ("siglip", "zeroshot/auroc/"), ("mae", "linear_probe/auroc/"),
])
def test_synthetic_ct_smoke_trains_and_evaluates(experiment, evaluated, data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = radfm("train", "--config", f"{REPO / 'experiments' / 'synthetic_ct' / experiment}.py:smoke",
                   "--workdir", str(workdir), "--set", "total_steps=10", data_dir=data_dir, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(loss == loss for loss in losses)  # finite
    results = _last_eval(workdir)
    # Every rendered finding has positives and negatives in the test split, so each is scored;
    # the 11 CT-RATE abnormalities synthetic_ct never renders have no positives and are not.
    for name in LABEL_NAMES:
        value = results[evaluated + name]
        assert (value is not None) == (name in RENDERED), (name, value)


def test_ct_rate_recipe_plans_the_published_geometry():
    path = REPO / "experiments" / "ct" / "ct_rate_clip.py"
    published = load_experiment(f"{path}", [])
    assert image_shape(published) == (240, 480, 480) and image_channels(published) == 2
    assert published.model.image.tubelet == (10, 20, 20)  # 24 x 24 x 24 = 13,824 tokens
    assert image_shape(load_experiment(f"{path}:single_gpu", [])) == (120, 240, 240)
    assert load_experiment(f"{path}:local_global", []).model.image.attention == "local_global"
