"""Scale figure for 3D: the CT-CLIP-size recipe (experiments/ct/ct_rate_clip.py: 480 x 480 x 240
voxels, 10 x 20 x 20 tubelets -> 13,824 tokens, ViT-B-wide tower, bf16, model.remat=full)
compiled for TPU slices from this CPU host, fully sharded (mesh.data=1, mesh.fsdp = all chips):
the largest per-chip batch that fits in HBM, XLA's per-chip memory against the closed-form
estimate (tools/memory_estimate.py, whose vit3d terms cover 3D activations), FLOPs per example
(analytic, and XLA's cost analysis, which counts a scanned layer once) and the step time at
peak. Needs libtpu (the tpu extra); run with JAX_PLATFORMS=cpu (the compile-only TPU devices
need no TPU) and one such process at a time (libtpu holds a lock file).

The search compiles few batch sizes: it starts where the closed-form estimate says the chip
fills, then predicts the next size from XLA's own totals (memory is linear in the per-chip
batch), and stops when it has a batch that fits next to one that does not.

    python benchmarks/aot_ct_clip.py --topology v5p-8 --layout factorised
    python benchmarks/aot_ct_clip.py --topology v5e-8 --layout local_global

Each run adds its compiles to its topology and layout's entry in the JSON file and searches on
from them; --batches compiles given per-chip batches instead:

    python benchmarks/aot_ct_clip.py --topology v5p-8 --layout factorised --batches 32
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.parallel.chips import parse_tpu_topology
from radfm_jax.parallel.mesh import BATCH_AXES
from radfm_jax.tools.aot_compile import compile_train_step, format_report, target_devices
from radfm_jax.tools.memory_estimate import estimate_memory_per_chip
from radfm_jax.train.experiment import Experiment

CONFIG = "experiments/ct/ct_rate_clip.py"
# layout -> (config variant, overrides): the published factorised tower, HLIP's slab / global
# layers, and global attention over all 13,824 tokens in every layer.
LAYOUTS: dict[str, tuple[str, list[str]]] = {
    "factorised": (CONFIG, []),
    "local_global": (f"{CONFIG}:local_global", []),
    "global": (CONFIG, ["model.image.attention=global"]),
}
GiB = 2**30


def experiment_config(layout: str, chips: int, per_chip: int) -> ExperimentConfig:
    spec, overrides = LAYOUTS[layout]
    return load_experiment(spec, [*overrides, f"batch_size={per_chip * chips}", "mesh.data=1", "mesh.fsdp=-1"])


def estimated_per_chip_bytes(config: ExperimentConfig, topology: str) -> tuple[float, float]:
    """(state bytes, activation bytes per example) per chip of the closed-form estimate."""
    exp = Experiment.plan(config, devices=target_devices(topology).devices)
    mesh = exp.mesh
    estimate = estimate_memory_per_chip(exp.objective, exp.num_params,
                                        state_shards=mesh.shape["fsdp"] * mesh.shape["tensor"],
                                        batch_shards=math.prod(mesh.shape[axis] for axis in BATCH_AXES))
    per_chip = config.batch_size / math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    return estimate.state_bytes, estimate.activation_bytes / per_chip


def compile_at(layout: str, topology: str, chips: int, per_chip: int) -> dict[str, Any]:
    """One compile at `per_chip` examples per chip: its figures, or why it does not fit."""
    config = experiment_config(layout, chips, per_chip)
    start = time.perf_counter()
    try:
        report = compile_train_step(config, topology)
    except ConfigError as err:
        return {"per_chip_batch": per_chip, "fits": False, "error": str(err), "xla_total_bytes": None,
                "wall_s": time.perf_counter() - start}
    print(format_report(report), flush=True)
    full = report.to_dict()
    total, batch, breakdown = report.memory.total, report.batch_size, report.breakdown
    xla_flops = (None if report.compiled_flops_per_device is None
                 else report.compiled_flops_per_device * report.num_devices / batch)
    return {
        "per_chip_batch": per_chip,
        "fits": bool(report.fits),
        "xla_total_bytes": total,
        "xla_total_gib": total / GiB,
        "estimated_total_bytes": report.estimated_total_bytes,
        "xla_vs_estimate": total / report.estimated_total_bytes,
        "activations_xla_vs_estimate": breakdown.activations_and_scratch / report.estimated_activation_bytes,
        "estimated_activation_bytes_per_example": report.estimated_activation_bytes / per_chip,
        "model_tflop_per_example": report.model_flops_per_step / batch / 1e12,
        "hardware_tflop_per_example": report.hardware_flops_per_step / batch / 1e12,
        "xla_tflop_per_example_scanned_layer_once": None if xla_flops is None else xla_flops / 1e12,
        "step_time_at_peak_s": report.step_time_at_peak_s,
        "xla_estimated_step_s": report.xla_estimated_step_s,
        "wall_s": time.perf_counter() - start,
        "report": full,
    }


def next_batch(records: list[dict[str, Any]], hbm: float, state: float) -> int | None:
    """The next per-chip batch to compile, from XLA's totals so far (linear in the batch; with
    one total, through the estimate's train state `state` at batch 0); None when a fitting
    batch sits next to a failing one (or batch 1 fails)."""
    fits = sorted(r["per_chip_batch"] for r in records if r["fits"])
    fails = sorted(r["per_chip_batch"] for r in records if not r["fits"])
    lo, hi = (fits[-1] if fits else 0), (fails[0] if fails else None)
    if hi is not None and hi <= lo + 1:
        return None
    points = sorted((r["per_chip_batch"], r["xla_total_bytes"]) for r in records if r["xla_total_bytes"])
    if len(points) >= 2:
        (b1, x1), (b2, x2) = points[0], points[-1]
        slope = (x2 - x1) / (b2 - b1)
        intercept = x1 - slope * b1
    elif points:
        (b1, x1), intercept = points[0], state
        slope = (x1 - state) / b1
    else:  # no total (an error without one): halve
        return (lo + (hi or 2 * lo + 2)) // 2 if (hi or 2 * lo + 2) > lo + 1 else None
    predicted = int((hbm - intercept) // slope) if slope > 0 else lo + 1
    upper = hi - 1 if hi is not None else predicted + 1
    if lo + 1 <= predicted <= upper:
        return predicted
    return lo + 1 if predicted <= lo else (lo + upper + 1) // 2


def search(layout: str, topology: str, max_compiles: int, records: list[dict[str, Any]],
           batches: list[int]) -> dict[str, Any]:
    """Compile `batches` (per chip) if given, else search on from `records` (an earlier run's
    compiles) for at most `max_compiles` more; the entry of the JSON file."""
    chips = parse_tpu_topology(topology).total_chips
    hbm = target_devices(topology).chip.hbm_bytes
    state, per_example = estimated_per_chip_bytes(experiment_config(layout, chips, 1), topology)
    first = max(1, int((hbm - state) // per_example))
    print(f"{topology} {layout}: the estimate fills {hbm / GiB:.0f} GiB at {first} examples per chip "
          f"({per_example / GiB:.2f} GiB per example, state {state / GiB:.2f} GiB)", flush=True)
    queue = list(batches)
    batch: int | None = queue.pop(0) if queue else (next_batch(records, hbm, state) if records else first)
    for _ in range(len(batches) or max_compiles):
        if batch is None:
            break
        record = compile_at(layout, topology, chips, batch)
        records = [r for r in records if r["per_chip_batch"] != batch] + [record]
        print(json.dumps({k: v for k, v in record.items() if k != "report"}), flush=True)
        if not record["fits"] and record["xla_total_bytes"] is None and "device memory" not in record["error"]:
            break  # a config error other than memory: nothing to search
        batch = queue.pop(0) if queue else (None if batches else next_batch(records, hbm, state))
    records.sort(key=lambda r: r["per_chip_batch"])
    fitting = [r for r in records if r["fits"]]
    best = max(fitting, key=lambda r: r["per_chip_batch"]) if fitting else None
    failing = [r["per_chip_batch"] for r in records if not r["fits"]]
    return {
        "topology": topology,
        "layout": layout,
        "chips": chips,
        "hbm_bytes": hbm,
        "estimate_state_bytes": state,
        "estimate_activation_bytes_per_example": per_example,
        "largest_per_chip_batch": best["per_chip_batch"] if best else 0,
        # XLA:TPU's totals near the limit need not grow with the batch (it rematerializes to fit)
        "search_complete": (best["per_chip_batch"] + 1 if best else 1) in failing,
        "at_largest": {k: v for k, v in best.items() if k != "report"} if best else None,
        "compiles": records,
    }


def _entries(out: Path) -> list[dict[str, Any]]:
    return json.loads(out.read_text())["results"] if out.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", default="v5p-8")
    parser.add_argument("--layout", default="factorised", choices=sorted(LAYOUTS))
    parser.add_argument("--max-compiles", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="*", default=[],
                        help="compile these per-chip batches instead of searching")
    parser.add_argument("--out", default="benchmarks/results/aot_ct_clip.json")
    args = parser.parse_args()
    out = Path(args.out)
    key = (args.topology, args.layout)
    earlier = next((e["compiles"] for e in _entries(out) if (e["topology"], e["layout"]) == key), [])
    result = search(args.layout, args.topology, args.max_compiles, earlier, args.batches)
    entries = [e for e in _entries(out) if (e["topology"], e["layout"]) != key] + [result]
    out.write_text(json.dumps({"config": CONFIG, "mesh": "data=1, fsdp=all chips", "results": entries},
                              indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "compiles"}, indent=2))


if __name__ == "__main__":
    main()
