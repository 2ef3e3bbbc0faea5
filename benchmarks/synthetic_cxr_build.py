"""Time a synthetic_cxr build and summarise what it produced.

    python benchmarks/synthetic_cxr_build.py [--num-train 20000 --num-val 1000 --num-test 2000]
        [--image-size 64] [--seed 0] [--data-dir DIR] [--out benchmarks/results/synthetic_cxr_build.json]

Builds into a fresh temporary folder unless --data-dir is given (an existing build there is
reused, and the time then measures only the check). Prints and writes build seconds, examples
per second, per-finding label rates (positive / uncertain) and the generator's subtle fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders.synthetic_cxr import prepare
from radfm_jax.data.builders.synthetic_cxr.studies import (
    CHUNK_SIZE, SPLITS, SplitPlan, plan_splits, sample_patients, sample_studies,
)
from radfm_jax.data.findings import FINDINGS, POSITIVE, UNCERTAIN


def _generator_stats(counts: dict[str, int], seed: int) -> dict[str, dict[str, float]]:
    """Prevalence and subtle fraction of each finding as drawn (no rendering), over all splits."""
    plans = plan_splits(counts, seed)
    patients = sample_patients(max(int(p.patient.max()) + 1 for p in plans.values() if len(p.patient)), seed)
    present, subtle = [], []
    for si, split in enumerate(SPLITS):
        plan = plans[split]
        for chunk, start in enumerate(range(0, len(plan.study), CHUNK_SIZE)):
            rows = slice(start, start + CHUNK_SIZE)
            rng = np.random.default_rng([seed, si, chunk, 0])  # the builder's study stream
            st = sample_studies(SplitPlan(plan.patient[rows], plan.visit[rows], plan.study[rows]),
                                patients, rng, seed)
            present.append(st.present)
            subtle.append(st.subtle)
    present, subtle = np.concatenate(present), np.concatenate(subtle)
    return {f: {"prevalence": float(present[:, j].mean()),
                "subtle_fraction_of_positives": float(subtle[:, j].sum() / max(present[:, j].sum(), 1))}
            for j, f in enumerate(FINDINGS)}


def main() -> None:
    d = DataConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-train", type=int, default=d.num_train)
    ap.add_argument("--num-val", type=int, default=d.num_val)
    ap.add_argument("--num-test", type=int, default=d.num_test)
    ap.add_argument("--image-size", type=int, default=d.image_size)
    ap.add_argument("--seed", type=int, default=d.build_seed)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--out", default="benchmarks/results/synthetic_cxr_build.json")
    args = ap.parse_args()
    counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        builder = prepare(args.data_dir or tmp, num_train=args.num_train, num_val=args.num_val,
                          num_test=args.num_test, image_size=args.image_size, seed=args.seed)
        build_s = time.perf_counter() - start
        labels = np.stack([r["labels"] for r in builder.as_data_source()["train"]])
        words = [len(r["report"].split()) for r in builder.as_data_source()["test"]]
    total = sum(counts.values())
    result = {
        "image_size": args.image_size,
        "num_examples": total,
        "splits": counts,
        "build_s": round(build_s, 2),
        "examples_per_s": round(total / build_s, 1),
        "cpu_count": os.cpu_count(),
        "report_words": {"mean": float(np.mean(words)), "p95": float(np.percentile(words, 95))},
        "train_labels": {f: {"positive": float((labels[:, j] == POSITIVE).mean()),
                             "uncertain": float((labels[:, j] == UNCERTAIN).mean())}
                         for j, f in enumerate(FINDINGS)},
        "generator": _generator_stats(counts, args.seed),
    }
    print(json.dumps(result, indent=2))
    print(f"built {total} examples at {args.image_size}px in {build_s:.1f}s ({total / build_s:.0f} examples/s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
