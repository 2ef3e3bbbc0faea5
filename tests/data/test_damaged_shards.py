"""Damaged shard files of a prepared data set: the integrity check finds every one, `radfm data
check` lists them and fails, and training / evaluation stop with one line naming the shard and
the rebuild command, at start-up or at the read that fails (also in a Grain worker process).

Every test corrupts its own copy of a tiny synthetic_cxr (three shards per split), never the
data set other tests share."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from radfm_jax import cli
from radfm_jax.config.schema import DataConfig
from radfm_jax.data import shards
from radfm_jax.data.builders import synthetic_cxr
from radfm_jax.data.builders.synthetic_cxr.builder import SyntheticCxr, SyntheticCxrConfig
from radfm_jax.data.datasets import open_prepared
from radfm_jax.data.pipeline import make_eval_batches, make_train_loader
from radfm_jax.errors import DataError

SIZES = dict(num_train=60, num_val=10, num_test=10, image_size=32)
SMALL = ["--set", "data.num_train=60", "--set", "data.num_val=10", "--set", "data.num_test=10",
         "--set", "data.image_size=32"]
FLIPPED = "synthetic_cxr-train.array_record-00001-of-00003"
TRUNCATED = "synthetic_cxr-test.array_record-00002-of-00003"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A data folder holding the tiny build, written as three shards per split."""
    root = tmp_path_factory.mktemp("pristine")
    builder = SyntheticCxr(config=SyntheticCxrConfig(**SIZES), data_dir=str(root), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
    return root


@pytest.fixture
def data_dir(pristine, tmp_path) -> Path:
    """This test's own copy of the build."""
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def _builder(data_dir: Path) -> SyntheticCxr:
    return synthetic_cxr.prepare(str(data_dir), **SIZES)


def _data_cfg(data_dir: Path, **changes) -> DataConfig:
    return DataConfig(data_dir=str(data_dir), **SIZES, input_size=32, max_text_len=8, vocab_size=64,
                      augment=False, **changes)


def _flip(path: Path, offset: int, count: int = 16) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def _damage(directory: Path) -> tuple[Path, Path]:
    """Flip bytes in the middle of one shard and cut another in half, as the fault-injection
    suite does."""
    flipped, truncated = directory / FLIPPED, directory / TRUNCATED
    _flip(flipped, flipped.stat().st_size // 2)
    os.truncate(truncated, truncated.stat().st_size // 2)
    return flipped, truncated


def test_integrity_check_finds_exactly_the_damaged_shards(data_dir):
    builder = _builder(data_dir)
    directory = Path(builder.data_dir)
    assert len(shards.shard_files(builder)) == 9
    assert shards.find_damaged(builder) == []
    flipped, truncated = _damage(directory)
    damaged = shards.find_damaged(builder)
    assert [(d.shard.path, d.shard.split) for d in damaged] == [(flipped, "train"), (truncated, "test")]
    assert "truncated" in damaged[1].reason and "was 131072" in damaged[1].reason, damaged[1].reason

    # Bytes flipped in a record's chunk: that record only, found by its hash.
    _flip(directory / "synthetic_cxr-train.array_record-00002-of-00003", 20_000)
    # Bytes flipped in padding: no record changes, but the file is not as written.
    _flip(directory / "synthetic_cxr-val.array_record-00000-of-00003", 120_000)
    record, padding = shards.find_damaged(builder)[1:3]
    assert record.shard.path.name == "synthetic_cxr-train.array_record-00002-of-00003"
    assert "of 20 unreadable" in record.reason and "hash mismatch" in record.reason, record.reason
    assert padding.shard.path.name == "synthetic_cxr-val.array_record-00000-of-00003"
    assert "every record still reads" in padding.reason, padding.reason


def test_data_check_lists_every_damaged_shard_and_fails(data_dir, capsys):
    args = ["data", "check", "synthetic_cxr", *SMALL, "--set", f"data.data_dir={data_dir}"]
    assert cli.main(args) == 0
    assert "shard files: 9, every record readable" in capsys.readouterr().out
    directory = Path(_builder(data_dir).data_dir)
    flipped, truncated = _damage(directory)
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert "damaged shard files: 2 of 9" in captured.out
    assert str(flipped) in captured.out and str(truncated) in captured.out
    assert "patients in more than one split" not in captured.out  # the other checks are skipped
    error = captured.err.strip()
    assert error.startswith("radfm data: error: 2 of 9 shard files") and "\n" not in error, error
    rebuild = (f"rm -r {directory} && radfm data check synthetic_cxr --set data.data_dir={data_dir} "
               "--set data.num_train=60 --set data.num_val=10 --set data.num_test=10 --set data.image_size=32")
    assert rebuild in error and rebuild in captured.out

    # The printed command rebuilds it: afterwards every shard reads again.
    shutil.rmtree(directory)
    assert cli.main(rebuild.split(" && ")[1].split()[1:]) == 0
    assert "every record readable" in capsys.readouterr().out


def test_training_start_names_every_damaged_shard(data_dir):
    cfg = _data_cfg(data_dir)
    directory = open_prepared(cfg).directory  # records the shards as verified
    assert (directory / shards.FINGERPRINTS_FILE).is_file()
    flipped, truncated = _damage(directory)
    with pytest.raises(DataError) as caught:
        open_prepared(cfg)
    message = str(caught.value)
    assert "\n" not in message and "2 shard files are damaged" in message
    assert str(flipped) in message and str(truncated) in message and f"rm -r {directory} && " in message
    # Without the record of verified shards (a data set prepared by older code), shards written
    # after the build's dataset_info.json are read in full.
    (directory / shards.FINGERPRINTS_FILE).unlink()
    with pytest.raises(DataError, match="2 shard files are damaged"):
        open_prepared(cfg)


def test_cli_train_on_a_damaged_shard_is_one_line(data_dir, tmp_path, capsys):
    smoke = Path(__file__).resolve().parents[2] / "experiments" / "synthetic_cxr" / "clip.py"
    directory = open_prepared(_data_cfg(data_dir)).directory
    flipped, _ = _damage(directory)
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", f"{smoke}:smoke", "--workdir", str(workdir), *SMALL,
                     "--set", f"data.data_dir={data_dir}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("radfm train: error: ") and "\n" not in err, err
    assert str(flipped) in err and "radfm data check synthetic_cxr" in err
    assert not (workdir / "checkpoints").exists()


def test_a_failed_read_names_its_shard(data_dir):
    """A shard damaged after the start-up check: the read that fails says which file."""
    cfg = _data_cfg(data_dir)
    data = open_prepared(cfg)
    _flip(data.directory / FLIPPED, 20_000)  # one record's chunk
    loader = make_train_loader(data.sources["train"], tokenizer=data.tokenizer, data_cfg=cfg,
                               global_batch_size=10, seed=0)
    with pytest.raises(DataError) as caught:
        for _ in range(6):  # one epoch reads every record
            next(loader)
    message = str(caught.value)
    assert f"shard file {data.directory / FLIPPED} " in message and "of its 20 unreadable" in message
    assert "\n" not in message and f"rm -r {data.directory} && radfm data check" in message

    # Evaluation, on a shard cut in half: its reads return empty records, not errors.
    os.truncate(data.directory / TRUNCATED, (data.directory / TRUNCATED).stat().st_size // 2)
    with pytest.raises(DataError, match=f"shard file {data.directory / TRUNCATED} .*truncated"):
        list(make_eval_batches(data.sources["test"], tokenizer=data.tokenizer, data_cfg=cfg, batch_size=5))


@pytest.fixture
def absl_flags_parsed():
    """What the radfm CLI does before training: Grain's worker processes read absl flags."""
    from absl import flags

    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.mark_as_parsed()
    yield
    if not was_parsed:
        flags.FLAGS.unparse_flags()


def test_a_failed_read_in_a_worker_process_names_its_shard(data_dir, absl_flags_parsed):
    cfg = dataclasses.replace(_data_cfg(data_dir), worker_count=1)
    data = open_prepared(cfg)
    _flip(data.directory / FLIPPED, 20_000)
    loader = make_train_loader(data.sources["train"], tokenizer=data.tokenizer, data_cfg=cfg,
                               global_batch_size=10, seed=0)
    try:
        with pytest.raises(DataError, match=f"shard file {data.directory / FLIPPED} "):
            for _ in range(6):
                next(loader)
    finally:
        loader.close()
