"""`radfm eval`: run the evaluators on a workdir's checkpoint and write eval/step_*.json;
`radfm generate`: write a split's generated reports to a JSONL file."""

from __future__ import annotations

import json
import logging
import time

from etils import epath

from radfm_jax.config.loading import validate
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.errors import ConfigError
from radfm_jax.evals.compare import compare_predictions
from radfm_jax.evals.evaluators import evaluate_all
from radfm_jax.evals.evaluators.generation import GenerationEvaluator
from radfm_jax.evals.evaluators.predictions import read_predictions
from radfm_jax.parallel import multihost
from radfm_jax.train import checkpoint
from radfm_jax.train.eval_outputs import record_evaluation
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.metric_writer import MetricWriter, format_eval_table
from radfm_jax.train.paths import workdir_path
from radfm_jax.train.workdir import read_config

log = logging.getLogger(__name__)


def _restore(workdir: epath.Path, step: int | None, overrides: list[str], verb: str):
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


def evaluate_workdir(workdir: epath.PathLike, *, step: int | None = None, overrides: list[str] = ()) -> dict:
    workdir = workdir_path(workdir)
    exp, step, state = _restore(workdir, step, overrides, "eval")
    evaluators = exp.evaluators()
    results = evaluate_all(evaluators, state.params)
    writer = MetricWriter(workdir, resume_step=None) if multihost.is_primary() else None
    try:  # every process evaluates; process 0 writes
        path = record_evaluation(writer, exp, step, state.params, evaluators, results)
    finally:
        if writer:
            writer.close()
    if path:
        print(f"evaluation of step {step} ({path}):\n{format_eval_table(results)}")
    return results


def generate_workdir(workdir: epath.PathLike, out: epath.PathLike | None = None, *, step: int | None = None,
                     overrides: list[str] = ()) -> epath.Path:
    """Generated and reference reports of eval.split (eval.generate.* decoding, first
    eval.generate.max_examples studies) as JSONL: one {"index", "generated", "reference"} per line.
    Refuses to overwrite an existing file."""
    workdir = workdir_path(workdir)
    exp, step, state = _restore(workdir, step, overrides, "generate")
    config = exp.config
    out = epath.Path(out) if out else workdir / "generated" / f"{config.eval.split}_step_{step:08d}.jsonl"
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
        lines = (json.dumps({"index": index, "generated": text, "reference": reference}) + "\n"
                 for index, (text, reference) in enumerate(zip(generated, generator.references)))
        out.write_text("".join(lines))  # checked absent above (object stores have no exclusive create)
        print(f"wrote {len(generated)} generated reports of step {step} to {out}")
    return out


def _latest_predictions(workdir: epath.Path, step: int | None, kind: str) -> tuple[int, epath.Path, epath.Path]:
    """(step, predictions file, manifest) of `workdir`'s evaluation at `step` (default: the
    latest with `kind` predictions)."""
    eval_dir = workdir / "eval"
    found = sorted(eval_dir.glob(f"step_*.{kind}.predictions.npz"))
    steps = {int(path.name[5:13]): path for path in found if path.name[5:13].isdigit() and path.name[13] == "."}
    if not steps:
        raise ConfigError(f"{eval_dir} holds no {kind} predictions; run `radfm eval --workdir {workdir}` first")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ConfigError(f"{eval_dir} has {kind} predictions for steps {sorted(steps)}, not {step}")
    manifest = eval_dir / f"step_{step:08d}.manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"{manifest} is missing; re-run `radfm eval --workdir {workdir} --step {step}`")
    return step, steps[step], manifest


def compare_workdirs(workdir_a: epath.PathLike, workdir_b: epath.PathLike, *, step_a: int | None = None,
                     step_b: int | None = None, kind: str = "classification", n_resamples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """`radfm eval --compare A B`: per finding, A's AUROC minus B's on the same studies with a
    paired patient-bootstrap interval; written to A's eval/ folder (never over a file)."""
    a, b = workdir_path(workdir_a), workdir_path(workdir_b)
    step_a, predictions_a, manifest_a = _latest_predictions(a, step_a, kind)
    step_b, predictions_b, manifest_b = _latest_predictions(b, step_b, kind)
    results = compare_predictions(read_predictions(predictions_a), read_predictions(predictions_b),
                                  json.loads(manifest_a.read_text()), json.loads(manifest_b.read_text()),
                                  n_resamples=n_resamples, seed=seed)
    out = a / "eval" / f"compare_step_{step_a:08d}_with_{b.name}_step_{step_b:08d}.{kind}.json"
    if out.exists():
        out = out.with_suffix(f".{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps({"a": str(a), "b": str(b), "step_a": step_a, "step_b": step_b, **results},
                              indent=2) + "\n")
    print(f"{kind}: {a} step {step_a} minus {b} step {step_b} ({out}):\n{format_eval_table(results)}")
    return results
