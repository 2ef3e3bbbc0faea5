"""`radfm eval`: run the evaluators on a workdir's checkpoint and write eval/step_*.json;
`radfm generate`: write a split's generated reports to a JSONL file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from radfm_jax.config.loading import validate
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.errors import ConfigError
from radfm_jax.evals.evaluators import evaluate_all
from radfm_jax.evals.evaluators.generation import GenerationEvaluator
from radfm_jax.parallel import multihost
from radfm_jax.train import checkpoint
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.metric_writer import MetricWriter, format_eval_table
from radfm_jax.train.workdir import read_config

log = logging.getLogger(__name__)


def _restore(workdir: Path, step: int | None, overrides: list[str], verb: str):
    """The workdir's experiment (eval.* overrides applied) and its chosen checkpoint."""
    config = read_config(workdir)
    bad = [item for item in overrides if not item.startswith("eval.")]
    if bad:
        raise ConfigError(f"radfm {verb} only takes eval.* overrides, got {bad}")
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
    return exp, step, state


def evaluate_workdir(workdir: str | Path, *, step: int | None = None, overrides: list[str] = ()) -> dict:
    workdir = Path(workdir)
    exp, step, state = _restore(workdir, step, overrides, "eval")
    results = evaluate_all(exp.evaluators(), state.params)
    if not multihost.is_primary():  # every process evaluates; process 0 writes
        return results
    writer = MetricWriter(workdir, resume_step=None)
    try:
        path = writer.write_eval(step, results)
    finally:
        writer.close()
    print(f"evaluation of step {step} ({path}):\n{format_eval_table(results)}")
    return results


def generate_workdir(workdir: str | Path, out: str | Path | None = None, *, step: int | None = None,
                     overrides: list[str] = ()) -> Path:
    """Generated and reference reports of eval.split (eval.generate.* decoding, first
    eval.generate.max_examples studies) as JSONL: one {"index", "generated", "reference"} per line.
    Refuses to overwrite an existing file."""
    workdir = Path(workdir)
    exp, step, state = _restore(workdir, step, overrides, "generate")
    config = exp.config
    out = Path(out) if out else workdir / "generated" / f"{config.eval.split}_step_{step:08d}.jsonl"
    if out.exists():
        raise ConfigError(f"{out} exists; pass another --out or remove it")
    split = config.eval.split
    if split not in exp.data.sources:
        raise ConfigError(f"eval.split='{split}' not in the data set's splits {sorted(exp.data.sources)}")
    predictors = exp.predictors()
    if predictors.generate is None:
        raise ConfigError(f"objective.name='{config.objective.name}' trains no report decoder; "
                          "radfm generate needs a caption or coca workdir")
    generator = GenerationEvaluator(exp.data.sources[split], exp.data.sources["train"], exp.data.tokenizer,
                                    exp.data.label_names, predictors, exp.mesh, config.data, config.eval,
                                    seed=config.seed)
    generated = generator.generate(state.params)
    if multihost.is_primary():
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "x") as f:
            for index, (text, reference) in enumerate(zip(generated, generator.references)):
                f.write(json.dumps({"index": index, "generated": text, "reference": reference}) + "\n")
        print(f"wrote {len(generated)} generated reports of step {step} to {out}")
    return out
