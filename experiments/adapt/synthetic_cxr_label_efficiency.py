"""Label efficiency on synthetic_cxr from the CLIP demo's checkpoint: linear probe, LoRA and full
fine-tuning (experiments/synthetic_cxr/finetune.py) on 1 %, 10 % and 100 % of the training
patients, 2 seeds each (18 runs), classification AUROC on the test split with patient-bootstrap
intervals, thresholds and temperatures chosen on the validation split.

    radfm train --config experiments/synthetic_cxr/clip.py --workdir runs/clip
    radfm adapt-sweep experiments/adapt/synthetic_cxr_label_efficiency.py --from runs/clip --root runs/label_eff

`:smoke` is 2 modes x 2 fractions x 1 seed of the tiny fine-tuning config (from clip.py:smoke).
"""

from pathlib import Path

from radfm_jax.adapt.label_efficiency import LabelEfficiencySpec

# The fine-tuning experiment, found from any working directory.
FINETUNE = str(Path(__file__).resolve().parents[1] / "synthetic_cxr" / "finetune.py")


def get_label_efficiency(arg: str = "") -> LabelEfficiencySpec:
    if arg == "":
        return LabelEfficiencySpec(
            name="synthetic_cxr_label_efficiency", config=FINETUNE, modes=("linear", "lora", "full"),
            fractions=(0.01, 0.1, 1.0), seeds=(0, 1),
            overrides=("eval.bootstrap=200",))
    if arg == "smoke":
        return LabelEfficiencySpec(
            name="synthetic_cxr_label_efficiency_smoke", config=FINETUNE, modes=("linear-smoke", "lora-smoke"),
            fractions=(0.5, 1.0), seeds=(0,), overrides=("total_steps=4", "eval_every=4", "checkpoint_every=4"))
    raise ValueError(f"unknown variant {arg!r}; use '' or 'smoke'")
