"""An IsoFLOP sweep on synthetic_cxr: 3 compute budgets x 3 model sizes, each point trained for
the steps that spend its budget (analytic model FLOPs per step), on the whole training split,
CLIP objective, evaluated once at its end. Read each budget's loss / AUROC against parameters
for the compute-optimal size (Hoffmann et al. 2022, approach 2).

    radfm sweep run experiments/scaling/synthetic_cxr_isoflop.py --root runs/scaling_isoflop
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_cxr_demo import BASE, MODEL_SIZES  # noqa: E402

from radfm_jax.config.loading import load_experiment
from radfm_jax.scaling.sweep import Sweep, isoflop

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
    base = load_experiment(BASE, BASE_OVERRIDES)
    return isoflop(base, budgets=BUDGETS, model_sizes=MODEL_SIZES, vocab_size=base.data.vocab_size, min_steps=50,
                   name="synthetic_cxr_isoflop", base_spec=BASE, base_overrides=BASE_OVERRIDES)
