"""Train-step throughput of an experiment config on this machine's devices, on random
inputs of the configured shapes (no input pipeline): examples/s and step time.

    python benchmarks/train_step.py --config experiments/synthetic_cxr/clip.py --set batch_size=64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from radfm_jax.config.loading import load_experiment
from radfm_jax.train.experiment import Experiment


def measure(config, vocab_size: int, steps: int) -> dict:
    exp = Experiment.plan(config, vocab_size)
    state = exp.init_state()
    step = exp.train_step().jit()
    batch = exp.random_batch()
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    return {
        "config": config.name,
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "parameters": exp.num_params,
        "batch_size": config.batch_size,
        "first_step_s": compile_s,
        "step_time_s": step_s,
        "examples_per_sec": config.batch_size / step_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="experiments/synthetic_cxr/clip.py")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()
    result = measure(load_experiment(args.config, args.overrides), args.vocab_size, args.steps)
    result["overrides"] = args.overrides
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
