"""`radfm weights import` -> `radfm eval` / continued `radfm train --weights` -> `radfm weights
export`, end to end through the command line on synthetic_cxr, checked against transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hf_clip_reference import hf_embeddings, make_clip, prompt_sentences

pytestmark = pytest.mark.slow
import transformers  # noqa: E402  (the test extra)

REPO = Path(__file__).resolve().parents[2]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"


def radfm(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RADFM_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-m", "radfm_jax.cli", *args], env=env, capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    return result


def test_import_eval_continue_and_export(tmp_path):
    data_dir, source, workdir, out = (tmp_path / name for name in ("data", "hf", "run", "exported"))
    make_clip(source)
    short = ["--set", "total_steps=2", "--set", "eval_every=2", "--set", "checkpoint_every=2"]

    imported = radfm("weights", "import", str(source), "--config", SMOKE, "--workdir", str(workdir), *short,
                     data_dir=data_dir)
    assert imported.returncode == 0, imported.stderr[-3000:]
    config = json.loads((workdir / "config.json").read_text())
    assert config["init"]["weights"] == str(source.resolve())
    assert config["data"]["tokenizer_file"] == str(source / "tokenizer.json")
    assert config["model"]["text"]["causal"] and config["model"]["image"]["act"] == "quick_gelu"
    assert (workdir / "checkpoints" / "0").is_dir()

    again = radfm("weights", "import", str(source), "--config", SMOKE, "--workdir", str(workdir), *short,
                  data_dir=data_dir)
    assert again.returncode != 0 and "already holds checkpoints" in again.stderr

    evaluated = radfm("eval", "--workdir", str(workdir), data_dir=data_dir)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = json.loads((workdir / "eval" / "step_00000000.json").read_text())
    assert 0.0 <= scores["zeroshot/auroc_mean"] <= 1.0

    exported = radfm("weights", "export", "--workdir", str(workdir), "--out", str(out), data_dir=data_dir)
    assert exported.returncode == 0, exported.stderr[-3000:]
    reference = transformers.CLIPModel.from_pretrained(source).eval()
    roundtrip = transformers.CLIPModel.from_pretrained(out).eval()
    gray = np.random.default_rng(0).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    gray[:, 1:] = gray[:, :1]  # a radiograph: one gray copied to RGB
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    ids = np.zeros((2, 24), np.int64)
    for row, text in enumerate(prompt_sentences("independent_cxr")[:2]):
        encoded = tokenizer(text)["input_ids"][:24]
        ids[row, : len(encoded)] = encoded
    for before, after in zip(hf_embeddings(reference, gray, ids), hf_embeddings(roundtrip, gray, ids)):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)

    continued = radfm("train", "--config", SMOKE, "--weights", str(source), "--workdir", str(workdir), *short,
                      data_dir=data_dir)
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "resumed from step 0" in continued.stderr
    assert (workdir / "checkpoints" / "2").is_dir()
