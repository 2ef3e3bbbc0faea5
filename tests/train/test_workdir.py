import json

import pytest

from radfm_jax.config.overrides import to_dict
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.train.metric_writer import MetricWriter
from radfm_jax.train.workdir import claim_workdir, read_config


def test_new_workdir_gets_config_and_same_config_resumes(tmp_path):
    config = ExperimentConfig(total_steps=5)
    claim_workdir(tmp_path / "run", config, allow_config_change=False)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written == json.loads(json.dumps(to_dict(config)))
    claim_workdir(tmp_path / "run", config, allow_config_change=False)  # resume: no error
    assert read_config(tmp_path / "run") == config


def test_different_config_is_refused_then_kept_aside_with_flag(tmp_path):
    run = tmp_path / "run"
    claim_workdir(run, ExperimentConfig(total_steps=5), allow_config_change=False)
    changed = ExperimentConfig(total_steps=9)
    with pytest.raises(ConfigError, match=r"total_steps: 5 -> 9"):
        claim_workdir(run, changed, allow_config_change=False)
    assert read_config(run).total_steps == 5  # untouched
    claim_workdir(run, changed, allow_config_change=True)
    assert read_config(run).total_steps == 9
    backups = list(run.glob("config.*.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["total_steps"] == 5


def test_non_empty_folder_without_config_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        claim_workdir(tmp_path, ExperimentConfig(), allow_config_change=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unreadable_config_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ConfigError, match="not a valid radfm config"):
        read_config(tmp_path)


def test_resume_moves_metric_lines_past_the_checkpoint_aside(tmp_path):
    lines = [{"step": s, "loss": 1.0 / s} for s in (1, 5, 10, 15)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    writer = MetricWriter(tmp_path, resume_step=10)
    writer.write_train(15, {"loss": 0.5})
    writer.close()
    kept = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 5, 10, 15] and kept[-1]["loss"] == 0.5
    dropped = [json.loads(l) for l in (tmp_path / "metrics.dropped.jsonl").read_text().splitlines()]
    assert dropped == [lines[-1]]


def test_eval_results_with_other_values_keep_the_earlier_file(tmp_path):
    writer = MetricWriter(tmp_path, resume_step=None)
    writer.write_eval(7, {"zeroshot/auroc_mean": 0.5})
    writer.write_eval(7, {"zeroshot/auroc_mean": 0.5})  # same values: nothing to keep
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["step_00000007.json"]
    writer.write_eval(7, {"zeroshot/auroc_mean": 0.75})
    writer.close()
    files = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert len(files) == 2 and files[-1] == "step_00000007.json"
    earlier = json.loads((tmp_path / "eval" / files[0]).read_text())
    assert earlier == {"zeroshot/auroc_mean": 0.5}
    assert json.loads((tmp_path / "eval" / "step_00000007.json").read_text()) == {"zeroshot/auroc_mean": 0.75}


def _tfrecords(path):
    """The payloads of a TFRecord file, read with the format's own framing (length, CRC)."""
    import struct

    data, records, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        records.append(data[at + 12:at + 12 + length])
        at += 12 + length + 4
    return records


def test_tensorboard_scalars_are_on_disk_at_each_log_step_with_their_values(tmp_path):
    from tensorboardX.proto import event_pb2

    writer = MetricWriter(tmp_path, resume_step=None)
    writer.write_train(3, {"loss": 0.25, "lr": 1e-3})
    writer.write_eval(3, {"zeroshot/auroc@1": 0.75})
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    # Before close: each write is flushed, so a killed run keeps its curves.
    scalars = {(e.step, v.tag): v.simple_value for e in map(event_pb2.Event.FromString, _tfrecords(events))
               for v in e.summary.value}
    writer.close()
    assert scalars == {(3, "train/loss"): 0.25, (3, "train/lr"): pytest.approx(1e-3),
                       (3, "zeroshot/auroc_at_1"): 0.75}
