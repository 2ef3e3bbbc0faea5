"""Acceptance figure for `radfm compile`: a ViT-B/16 CLIP (text tower of ViT-B width, 12
layers) at 224 px, global batch 4096, fully sharded (mesh.rules=fsdp, mesh.fsdp = all chips),
compiled for a TPU v5e-256 from this CPU host: XLA's per-chip memory against the closed-form
estimate (tools/memory_estimate.py). Needs libtpu (the tpu extra).

No remat by default: at 16 examples per chip the step needs about 4 GiB of a v5e's 16 GiB, so
recomputation (model.remat=full: about 23% more FLOPs) would buy nothing; --remat compiles a
policy instead.

    python benchmarks/aot_vit_b16_v5e.py --topology v5e-256 --batch-size 4096
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from radfm_jax.config import presets
from radfm_jax.config.schema import (
    DataConfig,
    ExperimentConfig,
    MeshConfig,
    ModelConfig,
)
from radfm_jax.errors import ConfigError
from radfm_jax.tools.aot_compile import compile_train_step, format_report


def vit_b16_clip(batch_size: int, remat: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="clip_vit_b16_224",
        batch_size=batch_size,
        data=DataConfig(input_size=224, max_text_len=64, vocab_size=1024),
        model=ModelConfig(
            image=presets.vit("B", 16), text=presets.text("B"), embed_dim=512,
            scan_layers=True, remat=remat, compute_dtype="bfloat16",
        ),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1, rules="fsdp"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", default="v5e-256")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--remat", default="none")
    parser.add_argument("--out", default="benchmarks/results/aot_vit_b16_v5e.json")
    args = parser.parse_args()
    config = vit_b16_clip(args.batch_size, args.remat)
    start = time.perf_counter()
    try:
        report = compile_train_step(config, args.topology)
    except ConfigError as err:  # e.g. the step does not fit: record why
        result = {"topology": args.topology, "batch_size": args.batch_size, "remat": args.remat, "error": str(err),
                  "wall_s": time.perf_counter() - start}
    else:
        print(format_report(report))
        result = {"remat": args.remat, **report.to_dict()}
        result["within_25_percent_of_estimate"] = abs(result["memory_vs_estimate"] - 1) <= 0.25
    print(json.dumps({k: v for k, v in result.items() if k != "memory"}, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
