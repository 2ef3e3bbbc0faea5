"""`radfm eval`: run the evaluators on a workdir's checkpoint and write eval/step_*.json."""

from __future__ import annotations

import logging
from pathlib import Path

from radfm_jax.config.loading import validate
from radfm_jax.config.overrides import ConfigError, apply_overrides
from radfm_jax.parallel import multihost
from radfm_jax.train import checkpoint
from radfm_jax.train.loop import Experiment, logit_scale_of
from radfm_jax.train.metrics import MetricWriter, format_eval_table
from radfm_jax.train.workdir import read_config

log = logging.getLogger(__name__)


def evaluate_workdir(workdir: str | Path, *, step: int | None = None, overrides: list[str] = ()) -> dict:
    workdir = Path(workdir)
    config = read_config(workdir)
    bad = [item for item in overrides if not item.startswith("eval.")]
    if bad:
        raise ConfigError(f"radfm eval only takes eval.* overrides, got {bad}")
    config = apply_overrides(config, overrides)
    validate(config)
    manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints)
    try:
        available = sorted(manager.all_steps())
        if not available:
            raise ConfigError(f"no checkpoints in {workdir / 'checkpoints'}; train first")
        step = available[-1] if step is None else step
        if step not in available:
            raise ConfigError(f"no checkpoint for step {step}; available steps: {available}")
        exp = Experiment.build(config)
        state, _ = checkpoint.restore(manager, step, exp.layout.abstract, exp.layout.shardings)
    finally:
        manager.close()
    results = exp.evaluator()(state.params, logit_scale_of(state.params))
    if not multihost.is_primary():  # every process evaluates; process 0 writes
        return results
    writer = MetricWriter(workdir, resume_step=None)
    try:
        path = writer.write_eval(step, results)
    finally:
        writer.close()
    print(f"evaluation of step {step} ({path}):\n{format_eval_table(results)}")
    return results
