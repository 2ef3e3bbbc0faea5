"""Checkpoint save -> restore -> continue equals an uninterrupted run (fast tier, in-process)."""

import json

import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.train import loop

OVERRIDES = ["total_steps=8", "log_every=1", "eval_every=0", "checkpoint_every=100", "mesh.data=2", "mesh.fsdp=4"]


def _losses(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module", params=[
    ("clip.py:smoke", []), ("mae.py:smoke", []), ("captioner.py:smoke", ["objective.parallel_fraction=0.5"]),
    ("finetune.py:lora-smoke", ["objective.loss=weighted_bce"]),  # frozen weights, adapters, label weights
], ids=["clip", "mae", "cappa", "lora"])
def config(request, tmp_path_factory):
    import os

    os.environ.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    experiment, extra = request.param  # MAE and CapPa draw random inputs from (seed, step)
    return load_experiment(f"experiments/synthetic_cxr/{experiment}", OVERRIDES + extra)


def test_preempted_and_resumed_run_equals_uninterrupted(config, tmp_path, stop_at_step):
    loop.train(config, tmp_path / "straight")
    straight = _losses(tmp_path / "straight")
    assert [r["step"] for r in straight] == list(range(1, 9))

    stop_at_step(3)
    loop.train(config, tmp_path / "resumed")
    first_part = _losses(tmp_path / "resumed")
    assert [r["step"] for r in first_part] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]

    stop_at_step(10**9)
    loop.train(config, tmp_path / "resumed")
    resumed = _losses(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for key in {"loss", "lr", "grad_norm", "logit_scale"} & set(straight[0]):
        np.testing.assert_allclose([r[key] for r in resumed], [r[key] for r in straight], rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    assert len({r["loss"] for r in straight}) > 4  # the losses do change from step to step
