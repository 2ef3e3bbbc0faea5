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
import numpy as np

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.loop import build_step
from radfm_jax.train.optimizer import make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings
from radfm_jax.train.tasks import make_task


def measure(config, vocab_size: int, steps: int) -> dict:
    mesh = make_mesh(config.mesh)
    task = make_task(config, vocab_size, mesh)
    tx = make_optimizer(config.optim, config.total_steps)
    layout = plan_state(task.model_factory, tx, mesh, config.mesh.rules)
    state = init_train_state(layout, task.model_factory, tx)
    step = build_step(config, layout, tx, mesh, task).jit()
    rng = np.random.default_rng(0)
    size, length, batch_size = config.data.input_size, config.data.max_text_len, config.batch_size
    batch = to_global_batch(
        {
            "image": rng.normal(size=(batch_size, size, size, 1)).astype(np.float32),
            "tokens": rng.integers(3, vocab_size, (batch_size, length)).astype(np.int32),
            "labels": np.zeros((batch_size, 7), np.int8),
        },
        batch_shardings(mesh),
    )
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
        "parameters": int(sum(x.size for x in jax.tree.leaves(layout.abstract.params))),
        "batch_size": batch_size,
        "first_step_s": compile_s,
        "step_time_s": step_s,
        "examples_per_sec": batch_size / step_s,
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
