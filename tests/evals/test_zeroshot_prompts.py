"""Prompt sets (evals/prompt_sets.py) and the zeroshot_prompts evaluator, on a tiny CLIP model
over synthetic_cxr reports; the held-out prompt file against the synthetic report generator."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np
import pytest

from radfm_jax.config.loading import validate
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.config.schema import ExperimentConfig, MeshConfig
from radfm_jax.data.builders.synthetic_cxr.reports import write_reports
from radfm_jax.data.builders.synthetic_cxr.studies import plan_splits, sample_patients, sample_studies
from radfm_jax.data.datasets import PreparedData
from radfm_jax.data.findings import FINDINGS
from radfm_jax.data.tokenizer import train_tokenizer
from radfm_jax.errors import ConfigError
from radfm_jax.evals.evaluators import build_evaluators
from radfm_jax.evals.predictors import Predictors
from radfm_jax.evals.prompt_sets import check_findings, load_prompt_set, load_prompt_sets
from radfm_jax.evals.zeroshot import prompt_pairs

HELDOUT = "experiments/prompts/heldout_cxr.json"
INDEPENDENT = "experiments/prompts/independent_cxr.json"  # written blind; may share sentences


def _write(path, data) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def _synthetic_reports(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n reports and label rows written by the synthetic_cxr generator (no images)."""
    plan = plan_splits({"train": n, "val": 0, "test": 0}, seed)["train"]
    studies = sample_studies(plan, sample_patients(int(plan.patient.max()) + 1, seed),
                             np.random.default_rng([seed, 1]), seed)
    return write_reports(studies, np.random.default_rng([seed, 2]))


# --- loading and validation -------------------------------------------------------------------

GOOD = {"_comment": "ignored", "pleural_effusion": {"positive": ["Fluid in the pleural space."],
                                                    "negative": ["Pleural fluid is absent."], "_note": "ignored"}}


def test_load_ignores_comment_keys(tmp_path):
    prompt_set = load_prompt_set(_write(tmp_path / "mine.json", GOOD))
    assert prompt_set.name == "mine"
    assert prompt_set.pairs == {"pleural_effusion": (("Fluid in the pleural space.",), ("Pleural fluid is absent.",))}


@pytest.mark.parametrize("content, problem", [
    ("{\"pleural_effusion\": {\"positive\": [\"a\"],}", "not valid JSON"),
    ([["a"]], "top level must be an object"),
    ({"_comment": "only"}, "names no findings"),
    ({"pleural_effusion": {"positive": [], "negative": ["b"]}}, "'pleural_effusion.positive' must be a non-empty"),
    ({"pleural_effusion": {"positive": ["a"], "negative": ["b", " "]}}, "every item must be a non-blank string"),
    ({"pleural_effusion": {"positive": ["a"], "negative": [3]}}, "every item must be a non-blank string"),
    ({"pleural_effusion": {"positive": ["a"]}}, "needs exactly 'positive' and 'negative'"),
    ({"pleural_effusion": {"positive": ["a"], "negativ": ["b"]}}, "needs exactly 'positive' and 'negative'"),
    ({"pleural_effusion": ["a"]}, "must be an object"),
    ("{\"pneumothorax\": {\"positive\": [\"a\"], \"negative\": [\"b\"]}, \"pneumothorax\": {}}", "duplicate keys"),
])
def test_bad_files_are_config_errors_naming_file_and_problem(tmp_path, content, problem):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(ConfigError, match=re.escape(problem)) as err:
        load_prompt_set(path)
    assert path in str(err.value)


def test_missing_file_and_clashing_names(tmp_path):
    with pytest.raises(ConfigError, match=r"prompt set file '.*nowhere\.json' not found"):
        load_prompt_sets([str(tmp_path / "nowhere.json")])
    (tmp_path / "b").mkdir()
    first, second = _write(tmp_path / "p.json", GOOD), _write(tmp_path / "b" / "p.json", GOOD)
    with pytest.raises(ConfigError, match="share one"):
        load_prompt_sets([first, second])


def test_unknown_findings_name_them_and_the_data_sets_labels(tmp_path):
    data = {**GOOD, "pleural_efusion": GOOD["pleural_effusion"], "edema": GOOD["pleural_effusion"]}
    prompt_set = load_prompt_set(_write(tmp_path / "typo.json", data))
    with pytest.raises(ConfigError, match=r"\['edema', 'pleural_efusion'\].*'no_finding', 'cardiomegaly'"):
        check_findings(prompt_set, FINDINGS)
    check_findings(load_prompt_set(_write(tmp_path / "ok.json", GOOD)), FINDINGS)


def test_prompt_sets_from_the_command_line_are_validated(tmp_path):
    good = _write(tmp_path / "a.json", GOOD)
    config = apply_overrides(ExperimentConfig(), [f"eval.prompt_sets={good},{good.replace('a.json', 'b.json')}"])
    assert config.eval.prompt_sets == (good, str(tmp_path / "b.json"))
    with pytest.raises(ConfigError, match="b.json' not found"):
        validate(config)
    validate(apply_overrides(ExperimentConfig(), [f"eval.prompt_sets={good}"]))


# --- the evaluator on a tiny CLIP model -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(toy_experiment, tmp_path_factory):
    """A toy CLIP model at init, a 64-study split of synthetic reports and labels with random
    16 x 16 images, and its tokenizer."""
    folder = tmp_path_factory.mktemp("zeroshot_prompts")
    reports, labels = _synthetic_reports(64, seed=3)
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (16, 16, 1), dtype=np.uint8), "report": report, "labels": row,
                "patient_id": f"p{i}", "study_id": f"s{i}", "view": "PA", "sex": "F", "age": np.int32(50)}
               for i, (report, row) in enumerate(zip(reports, labels))]
    tokenizer = train_tokenizer(reports, 64, folder / "tokenizer.model")
    exp = toy_experiment(MeshConfig(), batch_size=8,
                         changes={"eval.batch_size": 16, "data.vocab_size": tokenizer.vocab_size})
    data = PreparedData({"test": records}, tokenizer, folder, FINDINGS)
    return exp, exp.init_state().params, exp.predictors(), data, folder


def _with_sets(config: ExperimentConfig, paths) -> ExperimentConfig:
    return dataclasses.replace(config, eval=dataclasses.replace(config.eval, prompt_sets=tuple(paths)))


def test_default_prompts_as_a_set_match_the_zeroshot_evaluator_and_spread(tiny, caplog):
    exp, params, predictors, data, folder = tiny
    cfg = exp.config.eval
    pairs = prompt_pairs(FINDINGS, cfg.positive_templates, cfg.negative_templates)
    default = _write(folder / "default.json", {f: {"positive": p, "negative": n} for f, (p, n) in pairs.items()})
    swapped = _write(folder / "swapped.json", {f: {"positive": n, "negative": p} for f, (p, n) in pairs.items()})
    partial = _write(folder / "partial.json", {f: {"positive": pairs[f][0], "negative": pairs[f][1]}
                                               for f in ("pleural_effusion", "cardiomegaly")})
    config = _with_sets(exp.config, [default, swapped, partial])
    with caplog.at_level(logging.INFO, logger="radfm_jax.evals.evaluators.zeroshot_prompts"):
        # eval.prompt_sets adds the evaluator to those named.
        reference, evaluator = build_evaluators(config, data, predictors, exp.mesh, ("zeroshot_retrieval",))
    assert "'partial' has no prompts for ['no_finding', 'pneumothorax', 'consolidation', 'lung_lesion', " \
           "'support_devices']" in caplog.text
    expected, got = reference(params), evaluator(params)

    aurocs = [expected[f"zeroshot/auroc/{f}"] for f in FINDINGS]
    assert sum(not np.isnan(a) for a in aurocs) >= 5  # enough findings with both classes in 64 studies
    for finding in FINDINGS:
        assert got[f"zeroshot_prompts/default/auroc/{finding}"] == pytest.approx(
            expected[f"zeroshot/auroc/{finding}"], abs=1e-9, nan_ok=True), finding
        # Swapping the sides turns P(present) into 1 - P(present).
        assert got[f"zeroshot_prompts/swapped/auroc/{finding}"] == pytest.approx(
            1 - expected[f"zeroshot/auroc/{finding}"], abs=1e-9, nan_ok=True), finding
    assert got["zeroshot_prompts/default/auroc_mean"] == pytest.approx(expected["zeroshot/auroc_mean"], abs=1e-9)
    assert got["zeroshot_prompts/default/num_findings_skipped"] == 0.0

    # The partial set: only its findings, their mean, the rest counted as skipped.
    assert sorted(k for k in got if k.startswith("zeroshot_prompts/partial/auroc/")) == [
        "zeroshot_prompts/partial/auroc/cardiomegaly", "zeroshot_prompts/partial/auroc/pleural_effusion"]
    assert got["zeroshot_prompts/partial/num_findings_skipped"] == 5.0
    both = [expected["zeroshot/auroc/cardiomegaly"], expected["zeroshot/auroc/pleural_effusion"]]
    assert got["zeroshot_prompts/partial/auroc_mean"] == pytest.approx(np.mean(both), abs=1e-9)

    means = [got[f"zeroshot_prompts/{name}/auroc_mean"] for name in ("default", "swapped", "partial")]
    assert means[1] == pytest.approx(1 - means[0], abs=1e-9)
    assert got["zeroshot_prompts/auroc_mean_spread"] == pytest.approx(max(means) - min(means), abs=1e-12)
    assert got["zeroshot_prompts/auroc_mean_spread"] > 0


def test_one_set_has_no_spread_and_problems_stop_before_model_work(tiny, tmp_path):
    exp, params, predictors, data, _ = tiny
    one = _with_sets(exp.config, [HELDOUT])
    (evaluator,) = build_evaluators(one, data, predictors, exp.mesh, ("zeroshot_prompts",))
    results = evaluator(params)
    assert "zeroshot_prompts/auroc_mean_spread" not in results
    assert sorted(results) == sorted([f"zeroshot_prompts/heldout_cxr/auroc/{f}" for f in FINDINGS]
                                     + ["zeroshot_prompts/heldout_cxr/auroc_mean",
                                        "zeroshot_prompts/heldout_cxr/num_findings_skipped"])

    def no_model_work(*args):
        raise AssertionError("the model ran before the prompt sets were checked")

    untouched = Predictors(encode_image=no_model_work, encode_text=no_model_work, logit_scale=no_model_work)
    typo = _write(tmp_path / "typo.json", {"pleural_efusion": GOOD["pleural_effusion"]})
    with pytest.raises(ConfigError, match="pleural_efusion"):
        build_evaluators(_with_sets(exp.config, [typo]), data, untouched, exp.mesh, ())
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_evaluators(_with_sets(exp.config, [_write(tmp_path / "bad.json", "{")]), data, untouched, exp.mesh, ())
    # Listed without files, or files for a model without embeddings (MAE): refused.
    with pytest.raises(ConfigError, match="name the prompt set files"):
        build_evaluators(exp.config, data, untouched, exp.mesh, ("zeroshot_prompts",))
    with pytest.raises(ConfigError, match=r"eval.prompt_sets is set .* without \['encode_image', 'encode_text'\]"):
        build_evaluators(one, data, Predictors(image_features=no_model_work), exp.mesh, ())


# --- the held-out prompt file -----------------------------------------------------------------

def _normalise(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", sentence.lower()).split())


def test_heldout_prompts_cover_the_synthetic_findings_in_other_words():
    prompt_set = load_prompt_set(HELDOUT)
    assert set(prompt_set.pairs) == set(FINDINGS)
    for finding, (positive, negative) in prompt_set.pairs.items():
        assert 3 <= len(positive) <= 5 and 3 <= len(negative) <= 5, finding
        # Negation in other forms than a leading "no": at most one such sentence per finding.
        assert sum(_normalise(s).startswith(("no ", "there is no ")) for s in negative) <= 1, finding

    reports, _ = _synthetic_reports(20_000, seed=0)
    generated = {_normalise(s) for report in reports
                 for s in re.split(r"FINDINGS:|IMPRESSION:|(?<=\.)\s+", report) if s.strip()}
    assert {"no pleural effusion", "small left pleural effusion", "endotracheal tube in place",
            "pleural effusion is absent", "the lungs are clear"} <= generated
    heldout = {_normalise(s) for pair in prompt_set.pairs.values() for side in pair for s in side}
    assert not heldout & generated


def test_independent_prompt_file_covers_every_synthetic_finding_on_both_sides():
    prompt_set = load_prompt_set(INDEPENDENT)
    assert set(prompt_set.pairs) == set(FINDINGS)
    assert all(len(positive) >= 3 and len(negative) >= 3 for positive, negative in prompt_set.pairs.values())
