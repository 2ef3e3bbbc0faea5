"""Compile time of the train step against depth, with layers unrolled and scanned
(model.scan_layers): scanning compiles one block whatever the depth, so its compile time
should stay nearly flat while the unrolled step's grows with depth.

    python benchmarks/compile_time_vs_depth.py --depths 2 4 8 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from radfm_jax.config import presets
from radfm_jax.config.schema import DataConfig, ExperimentConfig, MeshConfig, ModelConfig
from radfm_jax.train.experiment import Experiment


def compile_seconds(depth: int, scan: bool, batch_size: int) -> dict:
    config = ExperimentConfig(
        batch_size=batch_size,
        data=DataConfig(input_size=32, max_text_len=16, vocab_size=256),
        model=ModelConfig(
            image=presets.vit("Ti", 8, width=64, depth=depth, heads=2),
            text=presets.text("Ti", width=64, depth=depth, heads=2), embed_dim=32, scan_layers=scan,
        ),
        mesh=MeshConfig(data=-1, rules="dp"),
    )
    start = time.perf_counter()
    exp = Experiment.plan(config)
    lowered = exp.train_step().jit().lower(exp.layout.abstract, exp.abstract_batch())
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    return {"depth": depth, "scan_layers": scan, "trace_and_lower_s": lower_s, "compile_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/compile_time_vs_depth.json")
    args = parser.parse_args()
    results = {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind, "runs": []}
    for scan in (True, False):
        for depth in args.depths:
            results["runs"].append(compile_seconds(depth, scan, args.batch_size))
            print(json.dumps(results["runs"][-1]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
