"""Checkpoint save -> restore -> continue equals an uninterrupted run (fast tier, in-process)."""

import json

import jax
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.train import loop

OVERRIDES = ["total_steps=8", "log_every=1", "eval_every=0", "checkpoint_every=100", "mesh.data=2", "mesh.fsdp=4"]


def _losses(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """JAX's persistent compilation cache, for this module only: the three runs of a case
    compile the same programs (init, step, checkpoint copies), as a resumed job's fresh process
    would recompile them; the second and third runs load what the first compiled. The runs'
    programs are unchanged (a different one has another key and is compiled), only compiled
    once."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    settings = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("jax_cache")),
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    cc.reset_cache()  # the cache is set up on the next compile, from the settings above
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


# MAE and CapPa on one-block unrolled towers (quicker to compile); CLIP and LoRA keep the smoke
# configs' scanned layers, whose stacked parameters and adapters go through the checkpoint.
UNROLLED = ["model.scan_layers=false", "model.image.depth=1"]


@pytest.fixture(scope="module", params=[
    ("clip.py:smoke", []), ("mae.py:smoke", UNROLLED),
    ("captioner.py:smoke", ["objective.parallel_fraction=0.5", *UNROLLED, "model.decoder.depth=1"]),
    ("finetune.py:lora-smoke", ["objective.loss=weighted_bce"]),  # frozen weights, adapters, label weights
    ("dino.py:smoke", UNROLLED),  # EMA teacher and centres in the extra state, multi-crop views, iBOT masks
], ids=["clip", "mae", "cappa", "lora", "dino"])
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
    for key in {"loss", "lr", "grad_norm", "logit_scale", "dino_loss", "ibot_loss", "koleo_loss"} & set(straight[0]):
        np.testing.assert_allclose([r[key] for r in resumed], [r[key] for r in straight], rtol=1e-6, atol=1e-7,
                                   err_msg=key)
    assert len({r["loss"] for r in straight}) > 4  # the losses do change from step to step
