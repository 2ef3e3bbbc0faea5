"""A CPU-sized scaling grid on synthetic_cxr: 4 model sizes x 3 training-set sizes (patients),
CLIP objective, each point a short run evaluated once at its end (zero-shot AUROC and retrieval
on the test split).

    radfm sweep run experiments/scaling/synthetic_cxr_demo.py --root runs/scaling_demo
    radfm sweep status experiments/scaling/synthetic_cxr_demo.py --root runs/scaling_demo
    radfm sweep collect experiments/scaling/synthetic_cxr_demo.py --root runs/scaling_demo

`:smoke` is a 2 x 2 grid of tiny points for tests (the clip smoke data, 4 steps each).
"""

from pathlib import Path

from radfm_jax.config.loading import load_experiment
from radfm_jax.scaling.sweep import Sweep, grid

# The base experiment, as emitted TPU commands name it (relative to the repository root), and
# where this file finds it from any working directory.
BASE = "experiments/synthetic_cxr/clip.py"
REPOSITORY = Path(__file__).resolve().parents[2]
STEPS = 300
# Batch 64 at 64 px; one evaluation at the last step, on the first 1,000 test studies; a
# checkpoint half way so a stopped point resumes. The demo's CLIP towers (patch 8, attention
# pooling) at three widths and depths.
BASE_OVERRIDES = ("batch_size=64", f"eval_every={STEPS}", f"checkpoint_every={STEPS // 2}", "log_every=25",
                  "optim.warmup_steps=30", "eval.max_examples=1000")
MODEL_SIZES = [
    {"name": "w32", "model.image.width": 32, "model.image.heads": 2, "model.image.depth": 1,
     "model.text.width": 32, "model.text.heads": 2, "model.text.depth": 1},
    {"name": "w64", "model.image.width": 64, "model.image.heads": 2, "model.image.depth": 1,
     "model.text.width": 64, "model.text.heads": 2, "model.text.depth": 1},
    {"name": "w128", "model.image.width": 128, "model.image.heads": 4, "model.image.depth": 2,
     "model.text.width": 128, "model.text.heads": 4, "model.text.depth": 2},
]
# The demo grid adds a fourth size between w64 and w128, so the per-size and compute-frontier
# laws (4 distinct values at least) can be fitted; the IsoFLOP spec uses the three above.
DEMO_MODEL_SIZES = [*MODEL_SIZES[:2],
                    {"name": "w96", "model.image.width": 96, "model.image.heads": 4, "model.image.depth": 2,
                     "model.text.width": 96, "model.text.heads": 4, "model.text.depth": 2},
                    MODEL_SIZES[2]]
# The default synthetic_cxr training split has 20,000 studies of 10,547 patients.
DATA_PATIENTS = [1000, 3000, 10000]


def get_sweep(arg: str = "") -> Sweep:
    if arg == "":
        base = load_experiment(str(REPOSITORY / BASE), BASE_OVERRIDES)
        return grid(base, model_sizes=DEMO_MODEL_SIZES, data_patients=DATA_PATIENTS, steps=[STEPS],
                    vocab_size=base.data.vocab_size, name="synthetic_cxr_demo", base_spec=BASE,
                    base_overrides=BASE_OVERRIDES)
    if arg == "smoke":
        spec, overrides = f"{BASE}:smoke", ("eval_every=4", "checkpoint_every=2", "log_every=1")
        base = load_experiment(str(REPOSITORY / spec), overrides)
        return grid(base, model_sizes=["XXS", {"name": "w16", "model.image.width": 16, "model.text.width": 16}],
                    data_patients=[50, 100], steps=[4], vocab_size=base.data.vocab_size,
                    name="synthetic_cxr_demo_smoke", base_spec=spec, base_overrides=overrides)
    raise ValueError(f"unknown variant {arg!r}; use '' (the demo grid) or 'smoke'")
