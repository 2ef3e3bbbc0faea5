"""The classification evaluator: a fine-tuned classifier's per-finding logits on the val split
(where every operating point and temperature is chosen) and on the evaluated split (where they
are applied unchanged and everything is reported).

Per finding (uncertain labels left out; "not mentioned" is negative), as macro means over
findings (`<metric>_mean`) and, for AUROC / AUPRC, micro (`auroc_micro`: every known
study-finding pair in one ranking):
- `classification/auroc/<f>`, `classification/auprc/<f>` (+ `/ci_low`, `/ci_high`: patient
  bootstrap, eval.bootstrap resamples);
- at the eval.operating_point threshold chosen on val: `threshold`, `sensitivity`,
  `specificity`, `ppv`, `f1` (`classification/<metric>/<f>`);
- calibration of sigmoid(logit / T) with T fitted on val: `temperature`, `ece` (equal-width
  bins), `ece_mass` (equal-mass bins), `brier`, `nll`, and the same before scaling
  (`ece_uncalibrated`, `brier_uncalibrated`, `nll_uncalibrated`);
- subgroups (eval.subgroups over sex, age bins, view) at one threshold per finding chosen on val
  at FPR eval.subgroup_fpr: per group TPR, FPR, AUROC and the gaps between groups, with
  intervals (`classification/subgroups/<f>/<attribute>/...`, evals/subgroups.py).
Artifacts: reliability diagrams and subgroup plots (PNG), the subgroup report with skipped
groups (JSON) and the evaluated split's predictions (NPZ, for `radfm eval --compare`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from etils import epath
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig, EvalConfig
from radfm_jax.data.findings import UNCERTAIN, binary_targets
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.errors import ConfigError
from radfm_jax.evals import calibration as cal
from radfm_jax.evals.evaluators.predictions import write_predictions
from radfm_jax.evals.intervals import auroc_intervals, per_finding_intervals
from radfm_jax.evals.metrics import auroc
from radfm_jax.evals.operating_points import auprc, binary_metrics, choose_threshold, parse_operating_point
from radfm_jax.evals.plots import reliability_diagram, subgroup_plot
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.split_inference import read_metadata, read_targets, run_over_split
from radfm_jax.evals.subgroups import age_bins, subgroup_report

PREFIX = "classification"
AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "f1")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _recorded(metadata: dict[str, np.ndarray], name: str) -> bool:
    """Whether the evaluated split records attribute `name` for any study ("" / "unknown" / age
    -1 mean not recorded)."""
    values = metadata[name]
    if name == "age":
        return bool(np.any(values >= 0))
    return bool(np.any((values != "") & (values != "unknown")))


def subgroup_attributes(metadata: dict[str, np.ndarray], eval_cfg: EvalConfig) -> tuple[str, ...]:
    """The attributes the subgroup analysis reads. The default set keeps those the data set
    records (Open-i has no sex or age); an attribute the user asked for that the data set does
    not record is a ConfigError naming the ones it does."""
    recorded = tuple(name for name in ("sex", "age", "view") if _recorded(metadata, name))
    missing = [name for name in eval_cfg.subgroups if name not in recorded]
    if missing and eval_cfg.subgroups != EvalConfig().subgroups:
        raise ConfigError(f"eval.subgroups asks for {missing}, which the evaluated split does not record; "
                          f"it records {list(recorded) or 'none of sex, age, view'}")
    return tuple(name for name in eval_cfg.subgroups if name in recorded)


def _attributes(metadata: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    columns = {"sex": metadata["sex"], "view": metadata["view"], "age": age_bins(metadata["age"])}
    return {name: columns[name] for name in names}


def micro_averages(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC of every known (study, finding) pair pooled into one ranking."""
    known = labels != UNCERTAIN  # left out, as per finding
    targets = labels[known] == 1
    scores = logits[known]
    return {f"{PREFIX}/auroc_micro": auroc(scores, targets),
            f"{PREFIX}/auprc_micro": auprc(scores, targets) if targets.any() else math.nan}


class ClassificationEvaluator:
    def __init__(self, val_source: Any, eval_source: Any, tokenizer: Tokenizer, label_names: Sequence[str],
                 predictors: Predictors, mesh: Mesh, data_cfg: DataConfig, eval_cfg: EvalConfig, *, seed: int):
        if predictors.classify is None:
            raise ValueError("the classification evaluator needs a classifier (objective classify)")
        self._rule = parse_operating_point(eval_cfg.operating_point)
        self._sources = {"val": (val_source, 0), "eval": (eval_source, eval_cfg.max_examples)}
        self._labels = {name: read_targets(source, count)[1] for name, (source, count) in self._sources.items()}
        self._metadata = read_metadata(eval_source, eval_cfg.max_examples)
        self._subgroups = subgroup_attributes(self._metadata, eval_cfg)
        self._label_names = tuple(label_names)
        self._predict = predictors
        self._cfg = eval_cfg
        self._seed = seed
        self._run = dict(tokenizer=tokenizer, data_cfg=data_cfg, batch_size=eval_cfg.batch_size, mesh=mesh)
        self._artifacts: dict[str, Any] = {}

    def _logits(self, params: dict, split: str) -> np.ndarray:
        source, count = self._sources[split]
        fn = lambda batch: self._predict.classify(params, batch["image"])  # noqa: E731
        return run_over_split(source, {"logits": fn}, max_examples=count, **self._run)["logits"].astype(np.float64)

    def __call__(self, params: dict) -> dict[str, float]:
        val, test = self._logits(params, "val"), self._logits(params, "eval")
        results: dict[str, float] = {f"{PREFIX}/num_examples": float(len(test))}
        curves, subgroups = {}, {}
        for index, finding in enumerate(self._label_names):
            curve, report = self._finding(finding, val[:, index], self._labels["val"][:, index],
                                          test[:, index], self._labels["eval"][:, index], results)
            if curve is not None:
                curves[finding] = curve
            if report:
                subgroups[finding] = report
        for metric in ("auroc", "auprc", *AT_THRESHOLD, "ece", "ece_mass", "brier", "nll", "ece_uncalibrated",
                       "brier_uncalibrated", "nll_uncalibrated"):
            values = [results[key] for f in self._label_names
                      if (key := f"{PREFIX}/{metric}/{f}") in results and not math.isnan(results[key])]
            results[f"{PREFIX}/{metric}_mean"] = float(np.mean(values)) if values else math.nan
        results.update(micro_averages(test, self._labels["eval"]))
        if self._cfg.bootstrap:
            patients = self._metadata["patient_id"]
            options = dict(n_resamples=self._cfg.bootstrap, seed=self._seed)
            results.update(auroc_intervals(PREFIX, test, self._labels["eval"], self._label_names, patients, **options))
            results.update(per_finding_intervals(PREFIX, "auprc", auprc, test, self._labels["eval"],
                                                 self._label_names, patients, **options))
        self._artifacts = {"curves": curves, "subgroups": subgroups, "logits": test}
        return results

    def _finding(self, finding: str, val_logits: np.ndarray, val_labels: np.ndarray, logits: np.ndarray,
                 labels: np.ndarray, results: dict[str, float]):
        """One finding's metrics into `results`; (its reliability curve, its subgroup report)."""
        key = lambda metric: f"{PREFIX}/{metric}/{finding}"  # noqa: E731
        val_targets, val_valid = binary_targets(val_labels)
        targets, valid = binary_targets(labels)
        z, t, vz, vt = logits[valid], targets[valid], val_logits[val_valid], val_targets[val_valid]
        results[key("auroc")] = auroc(z, t)
        results[key("auprc")] = auprc(z, t) if t.any() else math.nan
        both_in_val = vt.any() and not vt.all()
        if not both_in_val or not t.any() or t.all():
            return None, None  # no threshold or temperature can be chosen / scored
        threshold = choose_threshold(vz, vt, self._rule)
        results[key("threshold")] = float(threshold)
        at = binary_metrics(z, t, threshold)
        results.update({key(metric): float(at[metric]) for metric in AT_THRESHOLD})
        temperature = cal.fit_temperature(vz, vt)
        results[key("temperature")] = temperature
        raw, scaled = _sigmoid(z), _sigmoid(z / temperature)
        bins = self._cfg.calibration_bins
        results[key("ece")] = cal.ece(scaled, t, n_bins=bins, strategy="width")
        results[key("ece_mass")] = cal.ece(scaled, t, n_bins=bins, strategy="mass")
        results[key("brier")], results[key("nll")] = cal.brier(scaled, t), cal.nll(scaled, t)
        results[key("ece_uncalibrated")] = cal.ece(raw, t, n_bins=bins, strategy="width")
        results[key("brier_uncalibrated")], results[key("nll_uncalibrated")] = cal.brier(raw, t), cal.nll(raw, t)
        curve = cal.reliability_curve(scaled, t, n_bins=bins, strategy="width")
        if not self._subgroups:
            return curve, None
        global_threshold = choose_threshold(vz, vt, ("fpr", self._cfg.subgroup_fpr))
        attributes = {name: values[valid] for name, values in _attributes(self._metadata, self._subgroups).items()}
        report = subgroup_report(z, t, self._metadata["patient_id"][valid], attributes, global_threshold,
                                 n_resamples=max(self._cfg.bootstrap, 100), seed=self._seed)
        results.update({f"{PREFIX}/subgroups/{finding}/{name}": float(value) for name, value in report.items()
                        if isinstance(value, (int, float)) and not isinstance(value, bool)})
        return curve, report

    def write_artifacts(self, folder: epath.Path, step: int) -> list[epath.Path]:
        """Reliability diagrams, subgroup plots and report, predictions of the last call."""
        if not self._artifacts:
            return []
        stem = epath.Path(folder) / f"step_{step:08d}"
        paths = []
        if self._artifacts["curves"]:
            paths.append(reliability_diagram(self._artifacts["curves"], f"{stem}.reliability.png"))
        for finding, report in self._artifacts["subgroups"].items():
            paths.append(subgroup_plot(report, f"{stem}.subgroups.{finding}.png"))
        if self._artifacts["subgroups"]:
            path = epath.Path(f"{stem}.subgroups.json")
            path.write_text(json.dumps(self._artifacts["subgroups"], indent=2, default=str) + "\n")
            paths.append(path)
        paths.append(write_predictions(f"{stem}.{PREFIX}.predictions.npz", PREFIX, self._artifacts["logits"],
                                       self._labels["eval"], self._metadata, self._label_names))
        return paths
