"""`radfm train / eval / generate` on the generative objectives, as a user runs them (slow tier):
one tiny captioner run and one tiny MAE run, through the same trainer as the contrastive ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import REPO, TINY, data_dir, error_message, one_line_error, radfm  # noqa: F401 (fixture)

from radfm_jax.data.findings import FINDINGS

pytestmark = pytest.mark.slow


def _smoke(name: str) -> str:
    return f"{REPO / 'experiments' / 'synthetic_cxr' / name}.py:smoke"


def _train(tmp_path_factory, data_dir, name: str) -> Path:
    workdir = tmp_path_factory.mktemp(name) / "run"
    result = radfm("train", "--config", _smoke(name), "--workdir", str(workdir), *TINY, data_dir=data_dir)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert "Traceback" not in result.stderr
    return workdir


@pytest.fixture(scope="module")
def captioner(tmp_path_factory, data_dir) -> Path:
    return _train(tmp_path_factory, data_dir, "captioner")


@pytest.fixture(scope="module")
def mae(tmp_path_factory, data_dir) -> Path:
    return _train(tmp_path_factory, data_dir, "mae")


def _eval(workdir: Path, step: int) -> dict:
    return json.loads((workdir / "eval" / f"step_{step:08d}.json").read_text())


def test_captioner_reports_generation_metrics(captioner):
    results = _eval(captioner, 12)
    required = {f"report/bleu{n}" for n in range(1, 5)} | {"report/rougeL", "clinical/micro_f1", "clinical/macro_f1",
                                                            "memorisation/verbatim_fraction", "memorisation/ngram_fraction"}
    required |= {f"clinical/f1/{finding}" for finding in FINDINGS}
    assert required <= set(results), required - set(results)
    assert 0 <= results["report/bleu1"] <= 100 and 0 <= results["report/rougeL"] <= 1
    metrics = [json.loads(line) for line in (captioner / "metrics.jsonl").read_text().splitlines()]
    assert {"token_accuracy", "perplexity"} <= set(metrics[-1])
    assert metrics[-1]["loss"] < metrics[0]["loss"]


def test_generate_writes_the_split_and_eval_reproduces_training(captioner, data_dir, tmp_path):
    out = tmp_path / "reports.jsonl"
    result = radfm("generate", "--workdir", str(captioner), "--out", str(out), data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(32))  # eval.generate.max_examples of the smoke
    assert all(row["reference"].startswith("FINDINGS:") for row in rows)
    assert all(isinstance(row["generated"], str) for row in rows)
    # Never over an existing file.
    again = radfm("generate", "--workdir", str(captioner), "--out", str(out), data_dir=data_dir)
    assert "exists" in error_message(again, "generate")
    # Greedy decoding is deterministic: radfm eval reproduces the in-training evaluation.
    before = _eval(captioner, 12)
    result = radfm("eval", "--workdir", str(captioner), data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for key, value in before.items():
        assert _eval(captioner, 12)[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_beam_and_sampling_generate_too(captioner, data_dir, tmp_path):
    for method in ("beam", "sample"):
        out = tmp_path / f"{method}.jsonl"
        result = radfm("generate", "--workdir", str(captioner), "--out", str(out), "--set",
                       f"eval.generate.method={method}", "--set", "eval.generate.max_examples=8", data_dir=data_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(out.read_text().splitlines()) == 8


def test_mae_reports_the_linear_probe(mae):
    results = _eval(mae, 12)
    assert {"linear_probe/auroc_mean"} | {f"linear_probe/auroc/{f}" for f in FINDINGS} <= set(results)
    assert not any(key.startswith(("zeroshot/", "report/")) for key in results)


def test_mae_cannot_generate_nor_zero_shot(mae, data_dir):
    result = radfm("generate", "--workdir", str(mae), data_dir=data_dir)
    assert "no report decoder" in error_message(result, "generate")
    result = radfm("eval", "--workdir", str(mae), "--set", "eval.evaluators=zeroshot_retrieval", data_dir=data_dir)
    message = error_message(result, "eval")
    assert "zeroshot_retrieval" in message and "encode_text" in message


def test_coca_needs_unimodal_blocks(data_dir, tmp_path):
    result = radfm("train", "--config", _smoke("coca"), "--workdir", str(tmp_path / "run"),
                   "--set", "model.decoder.unimodal_depth=0", data_dir=data_dir)
    assert "unimodal_depth" in one_line_error(result)
