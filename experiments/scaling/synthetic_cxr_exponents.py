"""A CPU sweep on synthetic_cxr for the joint law's exponents alpha and beta (E + A/N^alpha +
B/D^beta), which the demo grid cannot determine: 5 model sizes x 5 training-set sizes, CLIP
objective, every point trained for the same number of epochs of its subset and evaluated once at
its end (zero-shot AUROC and retrieval on the whole test split).

    radfm sweep run     experiments/scaling/synthetic_cxr_exponents.py --root runs/scaling_exponents
    radfm sweep collect experiments/scaling/synthetic_cxr_exponents.py --root runs/scaling_exponents

The design, against the demo's:
- range: parameters 6.6k-244k (1.6 decades; towers 4 to 64 wide, one layer each, so the small
  ones are cheap) and training studies about 1,250-20,000 (1.2 decades);
- the data axis moves the metric: the demo trains every point 300 steps, so 10x more studies
  only means fewer repeats and AUROC moves by about 0.01; here steps grow with the subset
  (a fixed 6 epochs), so more data is more training, as in Hoffmann et al. 2022, and the
  repetition is the same at every point (as the README asks of a sweep for the joint law);
- the smallest runs have 117 steps (at 40 steps nothing is learnt yet, whatever the size);
- 25 points for 5 parameters, and the whole test split (2,000 studies) for a less noisy AUROC.

Measured on 2 shared CPU cores: 51 minutes; on 1 - AUROC, alpha = 0.42 (95% bootstrap interval
0.21-1.00) and beta = 0.28 (0.23-0.61). That is not +-30%: runs of a few hundred steps are still
on the plateau contrastive training starts with, so size and training length interact and the
additive law leaves systematic residuals (README, "A longer sweep for the exponents").
"""

from pathlib import Path

from radfm_jax.config.loading import load_experiment
from radfm_jax.scaling.sweep import Sweep, grid

# The base experiment, as emitted TPU commands name it (relative to the repository root), and
# where this file finds it from any working directory.
BASE = "experiments/synthetic_cxr/clip.py"
REPOSITORY = Path(__file__).resolve().parents[2]
BATCH = 64
EPOCHS = 6
# The default synthetic_cxr training split: 20,000 studies of 10,547 patients, so a subset of P
# patients holds about 1.9 P studies (collect records the exact count as data_size).
TRAIN_PATIENTS = 10_547
STUDIES_PER_PATIENT = 20_000 / TRAIN_PATIENTS
# Training patients per point (0 = all), doubling; steps give each subset EPOCHS epochs.
DATA_PATIENTS = [660, 1320, 2640, 5280, 0]
# The demo's CLIP towers (patch 8, attention pooling), one layer, widths 4-64.
MODEL_SIZES = [
    {"name": f"w{width}", "model.image.width": width, "model.image.heads": heads, "model.image.depth": 1,
     "model.text.width": width, "model.text.heads": heads, "model.text.depth": 1}
    for width, heads in ((4, 1), (8, 1), (16, 2), (32, 2), (64, 2))
]


def steps_for(patients: int) -> int:
    """Steps for EPOCHS epochs of the subset of ``patients`` patients (0 = all) at BATCH."""
    studies = (patients or TRAIN_PATIENTS) * STUDIES_PER_PATIENT
    return round(EPOCHS * studies / BATCH)


def overrides_for(steps: int) -> tuple[str, ...]:
    """Warm-up a tenth of the run; one evaluation (the whole test split) and one checkpoint, at
    the end."""
    return (f"batch_size={BATCH}", f"eval_every={steps}", f"checkpoint_every={steps}",
            f"log_every={max(steps // 10, 1)}", f"optim.warmup_steps={max(steps // 10, 1)}",
            "eval.max_examples=0")


def get_sweep(arg: str = "") -> Sweep:
    if arg:
        raise ValueError(f"unknown variant {arg!r}; this sweep has none")
    points = []
    # Smallest subsets first: a sweep stopped early has its cheapest points.
    for patients in DATA_PATIENTS:
        steps = steps_for(patients)
        overrides = overrides_for(steps)
        base = load_experiment(str(REPOSITORY / BASE), overrides)
        points += grid(base, model_sizes=MODEL_SIZES, data_patients=[patients], steps=[steps],
                       vocab_size=base.data.vocab_size, base_spec=BASE, base_overrides=overrides).points
    return Sweep("synthetic_cxr_exponents", tuple(points), BASE)
