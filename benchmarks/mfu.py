"""MFU of ViT-B/16 CLIP in bf16 on this machine's accelerators, or its roofline on a TPU
topology compiled ahead of time from any host.

    python benchmarks/mfu.py                                  # on an H100 / TPU VM: measure
    python benchmarks/mfu.py --batch-per-device 128 --remat dots
    JAX_PLATFORMS=cpu python benchmarks/mfu.py --topology v5p-8   # roofline only (libtpu extra)

MFU counts model FLOPs the way MaxText does: the analytic matmul FLOPs of one step's forward
and backward passes (6 x parameters x tokens for the dense layers plus the attention score and
value products, with no recomputation from remat), divided by step time and by the chips'
dense bf16 peak (radfm_jax/parallel/chips.py). Model: ViT-B/16 at 224 px (196 tokens), a
12-layer width-512 text tower over 77 tokens, 512-d embeddings, CLIP loss, AdamW, scanned
layers, data parallel over every local device (--rules fsdp shards the state instead). With
--topology nothing runs: the step is compiled for that slice and the report gives XLA's own
step-time estimate (layers unrolled, so its cost analysis counts every block) and the step
time at the chips' peak FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from radfm_jax.config import presets
from radfm_jax.config.schema import DataConfig, ExperimentConfig, MeshConfig, ModelConfig
from radfm_jax.objectives.clip import ClipConfig
from radfm_jax.parallel.chips import chip_for_device
from radfm_jax.train.experiment import Experiment


def vit_b16_clip(global_batch: int, remat: str, rules: str, scan_layers: bool = True) -> ExperimentConfig:
    return ExperimentConfig(
        name="vit_b16_clip_bf16",
        batch_size=global_batch,
        objective=ClipConfig(),
        data=DataConfig(input_size=224, max_text_len=77, vocab_size=32_000),
        model=ModelConfig(image=presets.vit("B", 16), text=presets.text("B", width=512, depth=12, heads=8),
                          embed_dim=512, scan_layers=scan_layers, remat=remat, compute_dtype="bfloat16"),
        mesh=MeshConfig(data=-1, fsdp=1, rules=rules),
    )


def measure(config: ExperimentConfig, steps: int) -> dict:
    exp = Experiment.plan(config)
    state, batch = exp.init_state(), exp.random_batch()
    start = time.perf_counter()
    step = exp.train_step().jit().lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    for _ in range(2):  # warm-up
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    devices = jax.devices()
    chip = chip_for_device(devices[0])
    flops = exp.flops()
    return {
        "config": config.name, "device_kind": devices[0].device_kind, "devices": len(devices),
        "global_batch": config.batch_size, "remat": config.model.remat, "parameters": exp.num_params,
        "compile_s": compile_s, "step_time_s": step_s,
        "examples_per_sec_per_device": config.batch_size / step_s / len(devices),
        "model_flops_per_step": flops.model, "hardware_flops_per_step": flops.hardware,
        "peak_flops_per_device": chip.peak_bf16_flops if chip else None,
        "mfu": flops.model / (step_s * len(devices) * chip.peak_bf16_flops) if chip else None,
    }


def roofline(config: ExperimentConfig, topology: str) -> dict:
    from radfm_jax.tools.aot_compile import compile_train_step

    report = compile_train_step(config, topology).to_dict()
    keep = ("topology", "chip", "num_devices", "batch_size", "model_flops_per_step", "hardware_flops_per_step",
            "peak_flops_per_device", "xla_estimated_step_s", "step_time_at_peak_s", "fits")
    out = {key: report[key] for key in keep}
    out["per_chip_gib"] = report["memory"]["total"] / 2**30
    if out["xla_estimated_step_s"]:
        # The MFU a step as fast as XLA's own estimate would reach.
        out["mfu_at_xla_estimate"] = out["model_flops_per_step"] / (
            out["xla_estimated_step_s"] * out["num_devices"] * out["peak_flops_per_device"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-per-device", type=int, default=256)
    parser.add_argument("--remat", default="dots", help="none | full | dots | dots_no_batch | save_qkv_proj")
    parser.add_argument("--rules", default="dp", choices=["dp", "fsdp", "fsdp_tp"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--topology", default=None, help="compile for this TPU slice (e.g. v5p-8) instead")
    parser.add_argument("--out", default="benchmarks/results/mfu.json")
    args = parser.parse_args()
    if args.topology:
        from radfm_jax.tools.aot_compile import target_devices

        devices = len(target_devices(args.topology).devices)
        # Unrolled: XLA's cost analysis (and so its step-time estimate) sees a scanned block once.
        config = vit_b16_clip(args.batch_per_device * devices, args.remat, args.rules, scan_layers=False)
        result = roofline(config, args.topology)
    else:
        config = vit_b16_clip(args.batch_per_device * jax.device_count(), args.remat, args.rules)
        result = measure(config, args.steps)
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
