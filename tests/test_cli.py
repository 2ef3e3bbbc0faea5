"""`radfm train` / `radfm eval` as a user runs them: in a subprocess, on the smoke experiment.

Fast tier: users' mistakes that fail before training (one clear message, non-zero exit, no
traceback, nothing of theirs touched). Slow tier: one tiny finished run shared by the tests of
the workdir schema, of `radfm eval` reproducing the in-training evaluation, of resuming a
finished run, and of damaged or incompatible checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from radfm_jax.data.findings import FINDINGS

REPO = Path(__file__).resolve().parents[1]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"
TINY = ["--set", "total_steps=12", "--set", "eval_every=6", "--set", "checkpoint_every=6"]
TRAIN_KEYS = ("step", "loss", "lr", "examples_per_sec", "step_time_s")


def radfm(*args: str, data_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, RADFM_DATA_DIR=str(data_dir), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device: the quickest on a 2-core machine
    return subprocess.run(
        [sys.executable, "-m", "radfm_jax.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )


def error_message(result: subprocess.CompletedProcess, verb: str = "train") -> str:
    """The user-facing error: non-zero exit, no traceback, and the message printed last."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    marker = f"radfm {verb}: error: "
    assert marker in result.stderr, result.stderr
    return result.stderr[result.stderr.index(marker):]


def one_line_error(result: subprocess.CompletedProcess, verb: str = "train") -> str:
    """A mistake caught before anything is built: stderr is exactly one line."""
    message = error_message(result, verb)
    assert result.stderr.strip() == message.strip() and "\n" not in message.strip(), result.stderr
    return message


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file (and '<dir>' for every folder)."""
    return {
        str(path.relative_to(folder)): "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("radfm_data")


# ----------------------------------------------------------------------------- fast tier


@pytest.mark.parametrize(
    "override, wrong, nearest",
    [("totl_steps=3", "totl_steps", "total_steps"), ("model.image.widht=8", "model.image.widht", "model.image.width")],
)
def test_misspelt_key_names_it_and_the_nearest_valid_key(tmp_path, data_dir, override, wrong, nearest):
    result = radfm("train", "--config", SMOKE, "--workdir", str(tmp_path / "run"), "--set", override, data_dir=data_dir)
    message = one_line_error(result)
    assert f"'{wrong}'" in message and f"'{nearest}'" in message
    assert not (tmp_path / "run").exists()




@pytest.mark.parametrize(
    "override, needles",
    [
        ("total_steps=abc", ["'total_steps'", "int", "abc"]),
        ("optim.learning_rate=fast", ["'optim.learning_rate'", "float", "fast"]),
        ("objective.name=sigmoid", ["'objective.name'", "clip", "siglip", "sigmoid"]),
        ("total_steps=0", ["'total_steps'", "positive"]),
        ("total_steps", ["'total_steps'", "key=value"]),
        ("model=3", ["'model'", "group"]),
    ],
    ids=["int", "nested-float", "nested-choice", "not-positive", "no-equals", "group"],
)
def test_bad_value_is_one_clear_line(tmp_path, data_dir, override, needles):
    result = radfm("train", "--config", SMOKE, "--workdir", str(tmp_path / "run"), "--set", override, data_dir=data_dir)
    message = one_line_error(result)
    for needle in needles:
        assert needle in message
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path, data_dir):
    missing = tmp_path / "experiments" / "nope.py"
    result = radfm("train", "--config", f"{missing}:smoke", "--workdir", str(tmp_path / "run"), data_dir=data_dir)
    message = one_line_error(result)
    assert str(missing) in message and "not found" in message
    assert not (tmp_path / "run").exists()


def test_config_file_without_get_config(tmp_path, data_dir):
    experiment = tmp_path / "empty.py"
    experiment.write_text("CONFIG = None\n")
    result = radfm("train", "--config", str(experiment), "--workdir", str(tmp_path / "run"), data_dir=data_dir)
    assert "get_config" in one_line_error(result)


def test_unknown_config_variant(tmp_path, data_dir):
    result = radfm("train", "--config", SMOKE.replace(":smoke", ":smok"), "--workdir", str(tmp_path / "run"),
                   data_dir=data_dir)
    assert "smok" in one_line_error(result)


def test_workdir_of_another_experiment_is_refused_and_untouched(tmp_path, data_dir):
    from radfm_jax.config.loading import load_experiment
    from radfm_jax.train.workdir import claim_workdir

    run = tmp_path / "run"
    claim_workdir(run, load_experiment(SMOKE, ["total_steps=5"]), allow_config_change=False)
    before = snapshot(run)
    result = radfm("train", "--config", SMOKE, "--workdir", str(run), *TINY, data_dir=data_dir)
    message = error_message(result)
    assert "--allow-config-change" in message and "total_steps: 5 -> 12" in message
    assert snapshot(run) == before  # config.json unchanged, nothing added


def test_non_empty_folder_without_config_is_refused_and_untouched(tmp_path, data_dir):
    run = tmp_path / "mine"
    (run / "sub").mkdir(parents=True)
    (run / "notes.txt").write_text("my notes")
    (run / "sub" / "scan.png").write_bytes(b"\x89PNG")
    before = snapshot(run)
    result = radfm("train", "--config", SMOKE, "--workdir", str(run), data_dir=data_dir)
    message = one_line_error(result)
    assert "not empty" in message and "config.json" in message
    assert snapshot(run) == before


def test_workdir_that_is_a_file_is_refused(tmp_path, data_dir):
    path = tmp_path / "results.txt"
    path.write_text("precious")
    result = radfm("train", "--config", SMOKE, "--workdir", str(path), data_dir=data_dir)
    assert "not a directory" in one_line_error(result)
    assert path.read_text() == "precious"


def test_workdir_that_cannot_be_created(tmp_path, data_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = radfm("train", "--config", SMOKE, "--workdir", str(blocker / "run"), data_dir=data_dir)
    assert str(blocker / "run") in one_line_error(result)


@pytest.mark.parametrize("kind", ["is-a-file", "under-a-file"])
def test_unusable_data_dir(tmp_path, data_dir, kind):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    target = blocker if kind == "is-a-file" else blocker / "data"
    result = radfm("train", "--config", SMOKE, "--workdir", str(tmp_path / "run"),
                   "--set", f"data.data_dir={target}", data_dir=data_dir)
    message = error_message(result)
    assert f"'{target}'" in message and "data.data_dir" in message
    assert blocker.read_text() == "x"


def test_object_store_data_dir_is_refused_without_making_a_local_folder(tmp_path, data_dir):
    result = radfm("train", "--config", SMOKE, "--workdir", str(tmp_path / "run"),
                   "--set", "data.data_dir=gs://bucket/data", data_dir=data_dir)
    message = one_line_error(result)
    assert "'gs://bucket/data'" in message and "object store" in message and "mount" in message
    assert not (REPO / "gs:").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["empty", "missing", "other-files"])
def test_eval_on_a_folder_that_is_not_a_workdir(tmp_path, data_dir, kind):
    folder = tmp_path / "folder"
    if kind != "missing":
        folder.mkdir()
    if kind == "other-files":
        (folder / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = radfm("eval", "--workdir", str(folder), data_dir=data_dir)
    assert "not a radfm workdir" in one_line_error(result, "eval")
    assert snapshot(tmp_path) == before


def test_eval_with_damaged_config_json(tmp_path, data_dir):
    (tmp_path / "config.json").write_text('{"name": ')
    result = radfm("eval", "--workdir", str(tmp_path), data_dir=data_dir)
    message = one_line_error(result, "eval")
    assert "config.json" in message and "not a valid radfm config" in message


def test_eval_takes_only_eval_overrides(tmp_path, data_dir):
    from radfm_jax.config.loading import load_experiment
    from radfm_jax.train.workdir import claim_workdir

    claim_workdir(tmp_path / "run", load_experiment(SMOKE), allow_config_change=False)
    result = radfm("eval", "--workdir", str(tmp_path / "run"), "--set", "total_steps=3", data_dir=data_dir)
    assert "eval." in one_line_error(result, "eval")
    result = radfm("eval", "--workdir", str(tmp_path / "run"), "--set", "eval.splt=val", data_dir=data_dir)
    message = one_line_error(result, "eval")
    assert "'eval.splt'" in message and "'eval.split'" in message


def test_eval_on_a_workdir_without_checkpoints(tmp_path, data_dir):
    from radfm_jax.config.loading import load_experiment
    from radfm_jax.train.workdir import claim_workdir

    claim_workdir(tmp_path / "run", load_experiment(SMOKE), allow_config_change=False)
    result = radfm("eval", "--workdir", str(tmp_path / "run"), data_dir=data_dir)
    message = error_message(result, "eval")
    assert "no checkpoints" in message and "train first" in message


# ----------------------------------------------------------------------------- slow tier


class FinishedRun:
    def __init__(self, workdir: Path, result: subprocess.CompletedProcess):
        self.workdir = workdir
        self.result = result
        self.config = json.loads((workdir / "config.json").read_text())
        self.metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        # Copies of what training wrote, before any test runs `radfm eval` over them.
        self.evals = {
            int(path.stem.split("_")[1]): json.loads(path.read_text())
            for path in sorted((workdir / "eval").glob("step_????????.json"))
        }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir) -> FinishedRun:
    workdir = tmp_path_factory.mktemp("finished") / "run"
    result = radfm("train", "--config", SMOKE, "--workdir", str(workdir), *TINY, data_dir=data_dir)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    return FinishedRun(workdir, result)


def copy_of(finished: FinishedRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished.workdir, tmp_path / "run"))


@pytest.mark.slow
def test_train_prints_the_final_evaluation_table(finished):
    out = finished.result.stdout
    assert "evaluation at step 12" in out
    table = out[out.index("evaluation at step 12"):]
    for key, value in finished.evals[12].items():
        if value is not None:
            assert re.search(rf"^\s+{re.escape(key)}\s+{value:.4f}$", table, re.MULTILINE), (key, table)
    assert "Traceback" not in finished.result.stderr


@pytest.mark.slow
def test_metrics_jsonl_schema(finished):
    config = finished.config
    steps = [record["step"] for record in finished.metrics]
    # logged on step 1, every log_every steps, and the last step; each step once
    expected = sorted({1, config["total_steps"], *range(config["log_every"], config["total_steps"] + 1, config["log_every"])})
    assert steps == expected == [1, 5, 10, 12]
    for record in finished.metrics:
        for key in TRAIN_KEYS:
            assert isinstance(record[key], (int, float)) and math.isfinite(record[key]), (key, record)
        assert record["step_time_s"] > 0 and record["lr"] >= 0 and record["loss"] > 0
        assert record["examples_per_sec"] == pytest.approx(config["batch_size"] / record["step_time_s"], rel=1e-6)
    assert finished.metrics[0]["lr"] == 0.0  # warm-up starts at zero
    assert finished.metrics[-1]["lr"] > finished.metrics[0]["lr"]
    assert not (finished.workdir / "metrics.dropped.jsonl").exists()


@pytest.mark.slow
def test_eval_json_keys_and_values(finished):
    assert sorted(finished.evals) == [6, 12]
    # Each evaluation: its metrics, its manifest and the zero-shot scores per study.
    assert sorted(p.name for p in (finished.workdir / "eval").iterdir()) == [
        f"step_{step:08d}.{kind}" for step in (6, 12) for kind in ("json", "manifest.json", "zeroshot.predictions.npz")]
    required = {"zeroshot/auroc_mean"} | {f"zeroshot/auroc/{finding}" for finding in FINDINGS} | {
        f"retrieval/{direction}_recall@{k}" for direction in ("i2t", "t2i") for k in (1, 5, 10)
    }
    for step, results in finished.evals.items():
        assert required <= set(results), (step, required - set(results))
        for key in results:
            assert re.fullmatch(r"[a-z0-9_]+/[a-z0-9_@]+(/[a-z0-9_]+)?", key), key
        for direction in ("i2t", "t2i"):
            recalls = [results[f"retrieval/{direction}_recall@{k}"] for k in (1, 5, 10)]
            assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls), recalls
        aurocs = [results[f"zeroshot/auroc/{finding}"] for finding in FINDINGS]
        present = [a for a in aurocs if a is not None]
        assert present and all(0.0 <= a <= 1.0 for a in present)
        assert results["zeroshot/auroc_mean"] == pytest.approx(sum(present) / len(present), abs=1e-6)


@pytest.mark.slow
def test_tensorboard_events_hold_train_and_eval_scalars(finished):
    events = list((finished.workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    blob = b"".join(path.read_bytes() for path in events)
    for tag in ("train/loss", "train/lr", "train/examples_per_sec", "zeroshot/auroc_mean", "retrieval/i2t_recall_at_1"):
        assert tag.encode() in blob, tag


@pytest.mark.slow
def test_checkpoints_are_orbax_steps_with_state_data_and_metadata(finished):
    from radfm_jax.train import checkpoint

    folder = finished.workdir / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["12", "6"]
    for step in ("6", "12"):
        assert {"state", "data", "metadata"} <= {p.name for p in (folder / step).iterdir()}
    manager = checkpoint.make_manager(finished.workdir, keep=3)
    try:
        assert sorted(manager.all_steps()) == [6, 12]
        metadata = checkpoint.read_metadata(manager, 12)
    finally:
        manager.close()
    assert metadata["config"] == finished.config


@pytest.mark.slow
def test_radfm_eval_reproduces_the_in_training_evaluation(finished, data_dir):
    for step_args, step in (([], 12), (["--step", "6"], 6)):
        result = radfm("eval", "--workdir", str(finished.workdir), *step_args, data_dir=data_dir)
        assert result.returncode == 0, result.stderr[-5000:]
        assert f"evaluation of step {step}" in result.stdout
        again = json.loads((finished.workdir / "eval" / f"step_{step:08d}.json").read_text())
        assert set(again) == set(finished.evals[step])
        for key, value in finished.evals[step].items():
            if value is None:
                assert again[key] is None, key
            else:
                assert again[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_radfm_eval_of_a_step_without_checkpoint(finished, data_dir):
    result = radfm("eval", "--workdir", str(finished.workdir), "--step", "7", data_dir=data_dir)
    message = error_message(result, "eval")
    assert "step 7" in message and "[6, 12]" in message


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(finished, data_dir):
    before = {name: snapshot(finished.workdir / name) for name in ("checkpoints", "eval")}
    metrics_before = (finished.workdir / "metrics.jsonl").read_bytes()
    result = radfm("train", "--config", SMOKE, "--workdir", str(finished.workdir), *TINY, data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "already trained to step 12" in result.stderr
    assert (finished.workdir / "metrics.jsonl").read_bytes() == metrics_before
    assert {name: snapshot(finished.workdir / name) for name in ("checkpoints", "eval")} == before
    assert not (finished.workdir / "metrics.dropped.jsonl").exists()


def _truncate_state(step_dir: Path) -> None:
    for path in (step_dir / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"")


def _scramble_state_blobs(step_dir: Path) -> None:
    blobs = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert blobs
    for path in blobs:
        path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256 + 1))


def _break_metadata_json(step_dir: Path) -> None:
    (step_dir / "metadata" / "metadata").write_text("{")


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate_state, _scramble_state_blobs, _break_metadata_json],
                         ids=["truncated-state", "scrambled-state", "broken-metadata-json"])
def test_damaged_latest_checkpoint_is_reported_and_kept(finished, data_dir, tmp_path, damage):
    run = copy_of(finished, tmp_path)
    damage(run / "checkpoints" / "12")
    before = snapshot(run)
    for verb, args in (("train", ["--config", SMOKE, *TINY]), ("eval", [])):
        result = radfm(verb, "--workdir", str(run), *args, data_dir=data_dir)
        message = error_message(result, verb)
        assert str(run / "checkpoints" / "12") in message and "move that step folder" in message, message
        # one message: nothing (no orbax / asyncio noise) after it
        assert message.strip().count("\n") == 0, message
        assert snapshot(run) == before, verb  # nothing deleted or rewritten


@pytest.mark.slow
def test_following_the_damaged_checkpoint_advice_resumes_the_run(finished, data_dir, tmp_path):
    """Move the damaged step aside as the message says: training resumes from step 6 and logs
    the same losses as the first time; the redone steps' old lines go to metrics.dropped.jsonl."""
    run = copy_of(finished, tmp_path)
    _truncate_state(run / "checkpoints" / "12")
    shutil.move(run / "checkpoints" / "12", tmp_path / "damaged_step_12")
    result = radfm("train", "--config", SMOKE, "--workdir", str(run), *TINY, data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "resumed from step 6" in result.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [r["step"] for r in finished.metrics]
    for redone, first in zip(metrics, finished.metrics):
        assert redone["loss"] == pytest.approx(first["loss"], abs=1e-6), redone["step"]
    dropped = [json.loads(line)["step"] for line in (run / "metrics.dropped.jsonl").read_text().splitlines()]
    assert dropped == [10, 12]


@pytest.mark.slow
def test_checkpoint_of_another_model_names_the_mismatched_parameters(finished, data_dir, tmp_path):
    run = copy_of(finished, tmp_path)
    checkpoints_before = snapshot(run / "checkpoints")
    result = radfm("train", "--config", SMOKE, "--workdir", str(run), *TINY, "--set", "model.embed_dim=8",
                   "--allow-config-change", data_dir=data_dir)
    message = error_message(result)
    assert "different model" in message and "params.image_proj.kernel" in message and "(32, 16)" in message
    assert "Exception ignored" not in result.stderr
    assert snapshot(run / "checkpoints") == checkpoints_before
    assert len(list(run.glob("config.*.json"))) == 1  # the run's own config was kept aside
