"""An IsoFLOP sweep on synthetic_cxr: 3 compute budgets x 3 model sizes, each point trained for
the steps that spend its budget (analytic model FLOPs per step), on the whole training split,
CLIP objective, evaluated once at its end. Read each budget's loss / AUROC against parameters
for the compute-optimal size (Hoffmann et al. 2022, approach 2).

    radfm sweep run experiments/scaling/synthetic_cxr_isoflop.py --root runs/scaling_isoflop
"""

from pathlib import Path

from radfm_jax.config.loading import load_experiment
from radfm_jax.scaling.sweep import Sweep, isoflop

# The base experiment, as emitted TPU commands name it (relative to the repository root), and
# where this file finds it from any working directory.
BASE = "experiments/synthetic_cxr/clip.py"
REPOSITORY = Path(__file__).resolve().parents[2]
# The demo's CLIP towers (patch 8, attention pooling) at three widths and depths.
MODEL_SIZES = [
    {"name": "w32", "model.image.width": 32, "model.image.heads": 2, "model.image.depth": 1,
     "model.text.width": 32, "model.text.heads": 2, "model.text.depth": 1},
    {"name": "w64", "model.image.width": 64, "model.image.heads": 2, "model.image.depth": 1,
     "model.text.width": 64, "model.text.heads": 2, "model.text.depth": 1},
    {"name": "w128", "model.image.width": 128, "model.image.heads": 4, "model.image.depth": 2,
     "model.text.width": 128, "model.text.heads": 4, "model.text.depth": 2},
]

# Model FLOPs per step at batch 64: w32 0.90 G, w64 3.1 G, w128 22 G. The smallest budget gives
# w128 68 steps, the largest gives w32 6,659 (about 40 minutes for the sweep on 2 CPU cores).
BUDGETS = [1.5e12, 3e12, 6e12]
# Batch 64 at 64 px, a checkpoint every 200 steps, evaluation only at the last step (any
# eval_every above every point's steps means just that).
BASE_OVERRIDES = ("batch_size=64", "eval_every=1000000", "checkpoint_every=200", "log_every=25",
                  "optim.warmup_steps=30")


def get_sweep(arg: str = "") -> Sweep:
    if arg:
        raise ValueError(f"unknown variant {arg!r}; this sweep has none")
    base = load_experiment(str(REPOSITORY / BASE), BASE_OVERRIDES)
    return isoflop(base, budgets=BUDGETS, model_sizes=MODEL_SIZES, vocab_size=base.data.vocab_size, min_steps=50,
                   name="synthetic_cxr_isoflop", base_spec=BASE, base_overrides=BASE_OVERRIDES)
