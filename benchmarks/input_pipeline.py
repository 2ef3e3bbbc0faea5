"""Input-pipeline throughput: examples/s of the Grain train loader of an experiment's data set
(synthetic_cxr, synthetic_ct, ...: decode, augment, tokenize, batch), against examples/s the train step consumes on this machine
(benchmarks/presets_throughput.py or train_step.py figures, passed with --step-examples-per-sec).
The loader must outrun the step, or the devices wait for data.

    python benchmarks/input_pipeline.py --config experiments/synthetic_cxr/clip.py:smoke --batches 20
    python benchmarks/input_pipeline.py --config experiments/synthetic_ct/clip.py --set data.augment=true \
        --set data.worker_count=2 --out benchmarks/results/volume_pipeline_augment_w2.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from absl import flags

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.datasets import open_prepared
from radfm_jax.data.pipeline import make_train_loader


def measure(config, batches: int) -> dict:
    data = open_prepared(config.data)  # builds the data set on first use
    loader = make_train_loader(
        data.sources["train"], tokenizer=data.tokenizer, data_cfg=config.data,
        global_batch_size=config.batch_size, seed=config.seed,
    )
    next(loader)  # start-up (worker processes, first reads) is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    seconds = time.perf_counter() - start
    return {
        "config": config.name,
        "batch_size": config.batch_size,
        "input_size": config.data.input_size,
        "augment": config.data.augment,
        "worker_count": config.data.worker_count,
        "batches": batches,
        "examples_per_sec": batches * config.batch_size / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/synthetic_cxr/clip.py:smoke")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--step-examples-per-sec", type=float, default=None,
                        help="what the train step consumes, to report the ratio")
    parser.add_argument("--out", default="benchmarks/results/input_pipeline.json")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # Grain's worker processes (data.worker_count > 0) read absl flags
    result = measure(load_experiment(args.config, args.overrides), args.batches)
    result["overrides"] = args.overrides
    if args.step_examples_per_sec:
        result["step_examples_per_sec"] = args.step_examples_per_sec
        result["loader_over_step"] = result["examples_per_sec"] / args.step_examples_per_sec
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
