"""Train-step throughput of the ViT size presets (image tower ViT-<size>, text tower of the
same width), on random inputs on this machine's devices: examples/s, per device, and MFU
where the chip's peak is known (radfm_jax/parallel/chips.py) or given with --peak-tflops.

    python benchmarks/presets_throughput.py --sizes Ti S --image-size 64 --batch-size 32   # CPU
    python benchmarks/presets_throughput.py --sizes S B L --image-size 224 --batch-size 256 \
        --compute-dtype bfloat16                                                        # GPU / TPU
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from radfm_jax.config import presets
from radfm_jax.config.schema import (
    DataConfig,
    ExperimentConfig,
    MeshConfig,
    ModelConfig,
)
from radfm_jax.parallel.chips import chip_for_device
from radfm_jax.train.experiment import Experiment


def preset_config(size: str, args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(
        name=f"vit_{size}_{args.patch_size}",
        batch_size=args.batch_size,
        data=DataConfig(input_size=args.image_size, max_text_len=args.text_len, vocab_size=1024),
        model=ModelConfig(
            image=presets.vit(size, args.patch_size), text=presets.text(size, depth=args.text_depth),
            embed_dim=512, scan_layers=True, remat=args.remat, compute_dtype=args.compute_dtype,
        ),
        mesh=MeshConfig(data=-1, fsdp=1, rules=args.rules),
    )


def measure(config: ExperimentConfig, steps: int, peak_flops: float | None) -> dict:
    exp = Experiment.plan(config)
    state = exp.init_state()
    batch = exp.random_batch()
    start = time.perf_counter()
    compiled = exp.train_step().jit().lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    devices = jax.device_count()
    chip = chip_for_device(jax.devices()[0], peak_flops=peak_flops)
    model_flops = exp.flops().model
    return {
        "config": config.name,
        "device_kind": jax.devices()[0].device_kind,
        "devices": devices,
        "parameters": exp.num_params,
        "batch_size": config.batch_size,
        "image_size": config.data.input_size,
        "compute_dtype": config.model.compute_dtype,
        "compile_s": compile_s,
        "step_time_s": step_s,
        "examples_per_sec": config.batch_size / step_s,
        "examples_per_sec_per_device": config.batch_size / step_s / devices,
        "model_flops_per_step": model_flops,
        "mfu": model_flops / (step_s * devices * chip.peak_bf16_flops) if chip else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["Ti", "S"], choices=list(presets.VIT_SIZES))
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--text-len", type=int, default=32)
    parser.add_argument("--text-depth", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--remat", default="none")
    parser.add_argument("--rules", default="dp", choices=["dp", "fsdp", "fsdp_tp"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="per device, when the chip is not in the table")
    parser.add_argument("--out", default="benchmarks/results/presets_throughput.json")
    args = parser.parse_args()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    results = []
    for size in args.sizes:
        results.append(measure(preset_config(size, args), args.steps, peak))
        print(json.dumps(results[-1], indent=2), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
