"""`radfm data check`: patient overlap, duplicate images and label prevalence, on a built
synthetic_cxr and on hand-made splits with injected leaks."""

from __future__ import annotations

import collections
import types

import numpy as np

from radfm_jax import cli
from radfm_jax.data import check
from radfm_jax.data.builders import synthetic_cxr
from radfm_jax.data.findings import FINDINGS, LABEL_VALUE_NAMES

SMALL = ["--set", "data.num_train=60", "--set", "data.num_val=10", "--set", "data.num_test=10",
         "--set", "data.image_size=32"]


def _record(patient: str, pixel: int, labels) -> dict:
    return {"patient_id": patient.encode(), "image": np.full((4, 4, 1), pixel, np.uint8),
            "labels": np.array(labels, np.int8)}


def test_synthetic_cxr_check_matches_a_direct_count(tmp_path, capsys):
    data_dir = tmp_path / "data"
    assert cli.main(["data", "check", "synthetic_cxr", *SMALL, "--set", f"data.data_dir={data_dir}"]) == 0
    printed = capsys.readouterr().out
    assert "patients in more than one split: 0" in printed and "pleural_effusion" in printed
    builder = synthetic_cxr.prepare(str(data_dir), num_train=60, num_val=10, num_test=10, image_size=32)
    result = check.check_dataset(builder)
    assert result["splits"] == {"train": 60, "val": 10, "test": 10}
    for split, source in builder.as_data_source().items():
        recs = [source[i] for i in range(len(source))]
        labels = np.stack([r["labels"] for r in recs])
        for j, name in enumerate(FINDINGS):
            for value, value_name in LABEL_VALUE_NAMES.items():
                assert result["prevalence"][split][name][value_name] == int(np.sum(labels[:, j] == value))
        copies = collections.Counter(r["image"].tobytes() for r in recs)
        assert result["duplicates"]["within"][split] == sum(n - 1 for n in copies.values())


def test_injected_duplicates_and_shared_patients_are_reported():
    sources = {
        "train": [_record("a", 1, [1, 0]), _record("b", 2, [-1, -2]), _record("b", 2, [0, 0])],
        "val": [_record("c", 3, [1, 1])],
        "test": [_record("a", 4, [0, 1]), _record("d", 1, [1, -2])],
    }
    result = check.check_sources(sources, ("x", "y"))
    assert result["patient_overlap"] == {"count": 1, "pairs": {"train/val": 0, "train/test": 1, "val/test": 0},
                                         "examples": ["a"]}
    assert result["duplicates"] == {"within": {"train": 1, "val": 0, "test": 0},
                                    "across": {"train/val": 0, "train/test": 1, "val/test": 0}}
    assert result["prevalence"]["train"]["x"] == {"positive": 1, "negative": 1, "uncertain": 1,
                                                  "not_mentioned": 0}
    assert result["prevalence"]["test"]["y"] == {"positive": 1, "negative": 0, "uncertain": 0,
                                                 "not_mentioned": 1}
    table = check.format_report("demo", result)
    assert "patients in more than one split: 1" in table and "e.g. a" in table


def test_cli_exits_non_zero_when_patients_overlap(monkeypatch, capsys):
    leaky = {"train": [_record("a", 1, [1])], "val": [_record("b", 2, [0])], "test": [_record("a", 3, [1])]}
    builder = types.SimpleNamespace(as_data_source=lambda: leaky,
                                    info=types.SimpleNamespace(metadata={"label_names": ["x"]}))
    monkeypatch.setattr(check, "prepare_dataset", lambda data_cfg, data_dir: builder)
    assert cli.main(["data", "check", "mimic_cxr", "--set", "data.manual_dir=/nowhere"]) == 1
    assert "patients in more than one split: 1" in capsys.readouterr().out


def test_cli_rejects_other_overrides_and_unknown_names(capsys):
    assert cli.main(["data", "check", "synthetic_cxr", "--set", "total_steps=3"]) == 2
    assert cli.main(["data", "check", "mimic", "--set", "data.image_size=32"]) == 2
    err = capsys.readouterr().err
    assert "only data.* overrides" in err and "mimic_cxr" in err


def test_cli_real_data_set_without_manual_dir_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["data", "check", "nih_cxr14", "--set", f"data.data_dir={tmp_path}"]) == 2
    assert "data.manual_dir" in capsys.readouterr().err


def _capture_prepared(monkeypatch) -> list:
    """Replaces the build by a leak-free stand-in; returns the DataConfigs it was asked for."""
    asked = []
    clean = {"train": [_record("a", 1, [1])], "val": [_record("b", 2, [0])], "test": [_record("c", 3, [1])]}
    builder = types.SimpleNamespace(as_data_source=lambda: clean,
                                    info=types.SimpleNamespace(metadata={"label_names": ["x"]}))

    def prepare(data_cfg, data_dir):
        asked.append(data_cfg)
        return builder

    monkeypatch.setattr(check, "prepare_dataset", prepare)
    return asked


def test_real_data_sets_are_checked_at_their_recipes_preprocessing(monkeypatch, capsys):
    from radfm_jax.config import presets

    asked = _capture_prepared(monkeypatch)
    assert cli.main(["data", "check", "mimic_cxr", "--set", "data.manual_dir=/nowhere"]) == 0
    assert cli.main(["data", "check", "synthetic_cxr"]) == 0
    mimic, synthetic = asked
    recipe = presets.real_cxr("mimic_cxr").data
    assert (mimic.name, mimic.image_size, mimic.manual_dir) == ("mimic_cxr", recipe.image_size, "/nowhere")
    assert mimic.image_size == 224
    assert synthetic.image_size == presets.synthetic_cxr_cpu().data.image_size
    assert "224 px" in capsys.readouterr().out


def test_an_experiment_file_gives_the_preprocessing(monkeypatch, capsys):
    asked = _capture_prepared(monkeypatch)
    recipe = "experiments/cxr/openi_clip.py"
    assert cli.main(["data", "check", "--config", recipe, "--set", "data.image_size=256"]) == 0
    assert (asked[0].name, asked[0].image_size) == ("openi", 256)
    assert cli.main(["data", "check", "mimic_cxr", "--config", recipe]) == 2
    assert "trains on 'openi', not 'mimic_cxr'" in capsys.readouterr().err
    assert cli.main(["data", "check"]) == 2
