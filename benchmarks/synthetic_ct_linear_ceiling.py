"""How visible each synthetic_ct finding is to a linear model on pooled voxels: per finding, the
test AUROC of a logistic regression (scikit-learn) on block statistics of the stored volumes,
trained on the train split. No learned features, no text: a floor for what a trained image
tower should see, and a check that a finding is in the voxels at the built resolution.

    RADFM_DATA_DIR=/tmp/ct_data python benchmarks/synthetic_ct_linear_ceiling.py [--block 4]

Features per volume: the mean and standard deviation of every block x block x block cube of
each window channel, plus (with --histograms) a 32-bin histogram of each channel; standardised
on the train split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from radfm_jax.config.loading import load_experiment
from radfm_jax.data.builders.ct_rate.tables import LABEL_NAMES
from radfm_jax.data.builders.synthetic_ct.studies import FINDINGS
from radfm_jax.data.datasets import open_prepared


def volumes_and_labels(source) -> tuple[np.ndarray, np.ndarray]:
    records = [source[i] for i in range(len(source))]
    volumes = np.stack([np.asarray(r["volume"]) for r in records]).astype(np.float32) / 255.0
    return volumes, np.stack([np.asarray(r["labels"]) for r in records])


def block_features(volumes: np.ndarray, block: int, histograms: bool) -> np.ndarray:
    n, d, h, w, c = volumes.shape
    cubes = volumes.reshape(n, d // block, block, h // block, block, w // block, block, c)
    parts = [cubes.mean(axis=(2, 4, 6)).reshape(n, -1), cubes.std(axis=(2, 4, 6)).reshape(n, -1)]
    if histograms:
        for ch in range(c):
            counts = np.stack([np.histogram(v[..., ch], bins=32, range=(0, 1))[0] for v in volumes])
            parts.append(np.log1p(counts.astype(np.float32)))
    return np.concatenate(parts, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/synthetic_ct/clip.py")
    parser.add_argument("--block", type=int, default=4)
    parser.add_argument("--histograms", action="store_true")
    parser.add_argument("--regularisation", type=float, default=0.05, help="logistic regression C")
    parser.add_argument("--out", default="benchmarks/results/synthetic_ct_linear_ceiling.json")
    args = parser.parse_args()
    config = load_experiment(args.config, [])
    data = open_prepared(config.data)  # builds the data set on first use
    train_x, train_y = volumes_and_labels(data.sources["train"])
    test_x, test_y = volumes_and_labels(data.sources["test"])
    train_f = block_features(train_x, args.block, args.histograms)
    test_f = block_features(test_x, args.block, args.histograms)
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    train_f, test_f = (train_f - mean) / std, (test_f - mean) / std
    aurocs = {}
    for finding in FINDINGS:
        column = LABEL_NAMES.index(finding)
        model = LogisticRegression(C=args.regularisation, max_iter=3000).fit(train_f, train_y[:, column])
        aurocs[finding] = float(roc_auc_score(test_y[:, column], model.decision_function(test_f)))
    result = {"block": args.block, "histograms": args.histograms, "train": len(train_x), "test": len(test_x),
              "auroc": aurocs, "auroc_mean": float(np.mean(list(aurocs.values())))}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
