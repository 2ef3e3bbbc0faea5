"""The integrity of a prepared data set's ArrayRecord shard files, and naming the file behind a
read failure.

ArrayRecord (Riegeli) files carry a hash of every block header, chunk header and chunk, and
ArrayRecordReader checks them as it reads: flipped bytes in a record's chunk fail the read of
that record only ("chunk data hash mismatch"); a truncated or overwritten end of file (the
record index) breaks every read of the file: opening it does not raise (reader.ok() is False),
then a read raises ("Failed to read RiegeliPostscript") or, seen for a file cut to its first
64 KiB block, returns b"" (which TFDS decodes into all-None features, no error). Bytes flipped
in padding between chunks change no record and are not detected. The errors are RuntimeErrors
that do not name the file.

- `find_damaged(builder)` reads every record of every shard (raw bytes, no decoding): what
  `radfm data check` runs first.
- `check_changed(builder)` is the start-up check of training and evaluation: a shard whose size
  or times differ from when it was last seen intact (recorded in FINGERPRINTS_FILE beside the
  shards) is read in full, the others are skipped, so a long-verified data set costs a stat per
  shard. Without that record (a data set prepared before it existed), shards written after the
  build's dataset_info.json are read in full and the others only opened.
- `ShardedSource` wraps a split's source: a failed read becomes a DataError naming the shard
  file and the rebuild command (picklable, so it crosses Grain worker processes intact).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import logging
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radfm_jax.errors import DataError

log = logging.getLogger(__name__)

FINGERPRINTS_FILE = "shards_verified.json"  # {file name: [size, mtime_ns, ctime_ns]} seen intact
_READ_BATCH = 256  # records per read while verifying a shard
_LISTED = 5  # damaged shards named in a one-line error (data check lists them all)
# DataConfig fields that choose a build (data/builders/registry.prepare_dataset, config_for).
_BUILD_FIELDS = ("manual_dir", "text_target", "uncertain_policy", "windows", "resize", "split_seed",
                 "num_train", "num_val", "num_test", "image_size", "build_seed", "subgroup_shift")
_READ_ERRORS = (RuntimeError, OSError)  # what ArrayRecordReader raises for a damaged file


@dataclasses.dataclass(frozen=True)
class Shard:
    split: str
    path: Path
    num_records: int  # what the build wrote into it


@dataclasses.dataclass(frozen=True)
class DamagedShard:
    shard: Shard
    reason: str

    def describe(self) -> str:
        return f"{self.shard.path} ({self.shard.split}: {self.reason})"


def shard_files(builder: Any) -> list[Shard]:
    """Every shard file of every split of a prepared TFDS builder (none for a builder without
    split information or not written as ArrayRecord)."""
    info = getattr(builder, "info", None)
    splits = getattr(info, "splits", None)
    file_format = getattr(getattr(info, "file_format", None), "value", "array_record")
    if not splits or file_format != "array_record":
        return []
    shards: dict[str, Shard] = {}
    for split, split_info in splits.items():
        for instruction in split_info.file_instructions:
            shards.setdefault(instruction.filename, Shard(split, Path(instruction.filename),
                                                          int(instruction.examples_in_shard)))
    return list(shards.values())


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()).removeprefix("Corrupted Riegeli/records file: ")
    return re.sub(r" \(computed 0x[0-9a-f]+, stored 0x[0-9a-f]+\)", "", text)


_NO_INDEX = "its record index at the end of the file cannot be read: truncated or overwritten"


def _index_unreadable(err: BaseException | None, size: int, known_size: int | None) -> str:
    text = _short(err) if err is not None else ""
    if err is None or "Postscript" in text or "at least 64KB" in text or "footer" in text.lower():
        was = f", was {known_size}" if known_size is not None and known_size != size else ""
        return f"{_NO_INDEX} ({size} bytes{was})"
    return f"cannot be opened: {text}"


# Riegeli/records layout (google/riegeli doc/riegeli_records_file_format.md): a 24-byte block
# header at every multiple of 64 KiB (previous_chunk, next_chunk: distances to the interrupted
# chunk's ends), chunks of a 40-byte header (data_size, chunk_type, num_records, ...) and data.
_BLOCK, _BLOCK_HEADER, _CHUNK_HEADER = 1 << 16, 24, 40
_CHUNK_TYPES = b"smprt"  # signature, metadata, padding, simple records, transposed records
_SIGNATURE = bytes.fromhex(  # the first 64 bytes of every Riegeli/records file (the spec's)
    "83af70d10d884a3f0000000000000000" "4000000000000000" "91bac23c9287e1a9"
    "0000000000000000" "e19f13c0e9b1c372" "7300000000000000" "0000000000000000")


class _Layout(Exception):
    pass


def _content(f, pos: int, n: int) -> tuple[bytes, int]:
    """n bytes of chunk content from file position pos, skipping block headers; and the
    position after them."""
    out = bytearray()
    while n > 0:
        if pos % _BLOCK < _BLOCK_HEADER:
            pos += _BLOCK_HEADER - pos % _BLOCK
        take = min(n, _BLOCK - pos % _BLOCK)
        f.seek(pos)
        part = f.read(take)
        if len(part) < take:
            raise _Layout(f"the file ends inside the chunk at byte {pos}")
        out += part
        n, pos = n - take, pos + take
    return bytes(out), pos


def _chunk_end(begin: int, data_size: int, num_records: int) -> int:
    usable = _BLOCK - _BLOCK_HEADER
    size = _CHUNK_HEADER + data_size
    overhead = (size + (begin + usable - 1) % _BLOCK) // usable
    remaining = _BLOCK - 1 - (begin + num_records + _BLOCK - 1) % _BLOCK
    boundary = begin + num_records + max(0, remaining - (usable - 1))
    return max(begin + size + overhead * _BLOCK_HEADER, boundary)


def _structure_problem(path: Path) -> str | None:
    """What the reads of records do not see: every byte of the file belongs to a block header
    that agrees with its chunk, a chunk header, chunk data, or zero padding; records and the
    index are checked by their hashes when read. (Hash fields of block headers and of padding
    chunks are not checked: Python has no HighwayHash here.)"""
    import struct

    try:
        with open(path, "rb", buffering=1 << 20) as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(_SIGNATURE)) != _SIGNATURE:
                raise _Layout("its first 64 bytes (the file signature) are damaged")
            begin = 0
            while begin < size:
                header, data_begin = _content(f, begin, _CHUNK_HEADER)
                data_size, = struct.unpack_from("<Q", header, 8)
                kind = header[24:25]
                num_records = int.from_bytes(header[25:32], "little")
                empty = kind in (b"p", b"s") and (num_records or header[32:40] != bytes(8))
                if not kind or kind not in _CHUNK_TYPES or data_size > size or empty:
                    raise _Layout(f"the chunk header at byte {begin} is damaged")
                end = _chunk_end(begin, data_size, num_records)
                if end > size:
                    raise _Layout(f"the chunk at byte {begin} runs past the end of the file ({size} bytes)")
                for block in range(-(-begin // _BLOCK) * _BLOCK, end, _BLOCK):
                    f.seek(block + 8)
                    previous, following = struct.unpack("<QQ", f.read(16))
                    if (previous, following) != (block - begin, end - block):
                        raise _Layout(f"the block header at byte {block} is damaged")
                if kind == b"p":
                    content, _ = _content(f, data_begin, data_size)
                    if content.count(0) != len(content):
                        raise _Layout(f"the padding chunk at byte {begin} is not zeros")
                begin = end
    except _Layout as problem:
        return f"{problem} (outside the records: every record still reads)"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return None


def verify_shard(shard: Shard, *, every_record: bool = True, known_size: int | None = None) -> str | None:
    """Why the shard is damaged, or None when it reads. `every_record`: read (and so check the
    hashes of) every record; else only open it and check its record count. `known_size`: its
    size when last seen intact, for the message."""
    from array_record.python.array_record_module import ArrayRecordReader

    try:
        size = shard.path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    try:
        reader = ArrayRecordReader(str(shard.path))
    except _READ_ERRORS as err:
        return _index_unreadable(err, size, known_size)
    try:
        if not reader.ok():  # opening does not raise; a read raises or returns b"" (seen both)
            try:
                reader.read([0])
            except _READ_ERRORS as err:
                return _index_unreadable(err, size, known_size)
            return _index_unreadable(None, size, known_size)
        count = reader.num_records()
        if count != shard.num_records:
            return f"holds {count} records, the build wrote {shard.num_records}"
        if not every_record:
            return None
        bad: list[int] = []
        first: BaseException | None = None
        for start in range(0, count, _READ_BATCH):
            stop = min(count, start + _READ_BATCH)
            try:
                intact = all(reader.read(start, stop))  # a record is never empty bytes
            except _READ_ERRORS:
                intact = False
            if not intact:
                for i in range(start, stop):  # only on damage: which records
                    try:
                        if not reader.read([i])[0]:
                            raise RuntimeError("the record reads back empty")
                    except _READ_ERRORS as err:
                        bad.append(i)
                        first = first or err
        if not bad:
            return _structure_problem(shard.path)
        if len(bad) == 1:
            return f"record {bad[0]} of {count} unreadable: {_short(first)}"
        return f"{len(bad)} of {count} records unreadable, the first record {bad[0]}: {_short(first)}"
    finally:
        try:
            reader.close()
        except _READ_ERRORS:  # closing a reader that never opened raises
            pass


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _load_fingerprints(directory: Path) -> dict[str, list[int]] | None:
    try:
        recorded = json.loads((directory / FINGERPRINTS_FILE).read_text())
        return {str(k): list(v) for k, v in recorded["shards"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save_fingerprints(directory: Path, fingerprints: dict[str, list[int]]) -> None:
    """Best effort (a read-only data folder just verifies again next time); atomic, so
    processes sharing the folder never read half a file."""
    path = directory / FINGERPRINTS_FILE
    temporary = directory / f".{FINGERPRINTS_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps({"format": 1, "shards": fingerprints}, indent=1, sort_keys=True))
        os.replace(temporary, path)
    except OSError as err:
        log.debug("cannot record the verified shards in %s: %s", path, err)
        temporary.unlink(missing_ok=True)


def _intact_fingerprints(shards: Sequence[Shard], damaged: Sequence[DamagedShard],
                         recorded: dict[str, list[int]] | None) -> dict[str, list[int]]:
    """The fingerprints of the intact shards now; a damaged one keeps what was recorded when
    it was last intact (it differs from the file, so it is read again next time)."""
    bad = {d.shard.path for d in damaged}
    fingerprints = {}
    for shard in shards:
        name = shard.path.name
        if shard.path in bad:
            if recorded and name in recorded:
                fingerprints[name] = recorded[name]
            continue
        try:
            fingerprints[name] = _fingerprint(shard.path)
        except OSError:
            pass
    return fingerprints


def find_damaged(builder: Any) -> list[DamagedShard]:
    """Every damaged shard of a prepared data set, each read record by record; the intact ones
    are recorded as verified (so training's start-up check skips them)."""
    shards = shard_files(builder)
    if not shards:
        return []
    directory = Path(builder.data_dir)
    recorded = _load_fingerprints(directory) or {}
    damaged = []
    for shard in shards:
        known = recorded.get(shard.path.name)
        reason = verify_shard(shard, known_size=known[0] if known else None)
        if reason is not None:
            damaged.append(DamagedShard(shard, reason))
    _save_fingerprints(directory, _intact_fingerprints(shards, damaged, recorded))
    return damaged


def check_changed(builder: Any) -> list[DamagedShard]:
    """The damaged shards among those changed since last seen intact (see the module doc)."""
    shards = shard_files(builder)
    if not shards:
        return []
    directory = Path(builder.data_dir)
    recorded = _load_fingerprints(directory)
    try:
        built_ns = (directory / "dataset_info.json").stat().st_mtime_ns
    except OSError:
        built_ns = -1  # unknown: read every shard
    plan: list[tuple[Shard, bool, int | None]] = []  # (shard, read every record, size when intact)
    for shard in shards:
        try:
            fingerprint = _fingerprint(shard.path)
        except OSError:
            plan.append((shard, True, None))  # verify_shard says what is wrong
            continue
        if recorded is None:
            plan.append((shard, fingerprint[1] > built_ns, None))
        elif recorded.get(shard.path.name) != fingerprint:
            known = recorded.get(shard.path.name)
            plan.append((shard, True, known[0] if known else None))
    if not plan:
        return []
    full = sum(every for _, every, _ in plan)
    if full:
        log.info("verifying %d shard file(s) of %s changed since last verified (every record)", full, directory)
    damaged = []
    for shard, every, known_size in plan:
        reason = verify_shard(shard, every_record=every, known_size=known_size)
        if reason is not None:
            damaged.append(DamagedShard(shard, reason))
    _save_fingerprints(directory, _intact_fingerprints(shards, damaged, recorded))
    return damaged


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return str(value)


def rebuild_command(data_cfg: Any, directory: Path, data_dir: Path) -> str:
    """The shell command that deletes the prepared data set and builds it again, as
    `radfm data check` with the overrides that reproduce data_cfg's build."""
    from radfm_jax.data.builders.registry import SYNTHETIC  # imports TFDS: not at module load

    try:
        from radfm_jax.config.presets import recipe_data

        base = recipe_data(data_cfg.name)
    except Exception:  # noqa: BLE001 - no recipe: name every build field
        base = None
    sets = [f"data.data_dir={data_dir}"]
    for field in _BUILD_FIELDS:
        value = getattr(data_cfg, field)
        if base is None or value != getattr(base, field):
            if field == "manual_dir" and not value:
                continue
            sets.append(f"data.{field}={_override_value(value)}")
    if data_cfg.name not in SYNTHETIC and not data_cfg.manual_dir:
        sets.append(f"data.manual_dir=<your copy of {data_cfg.name}>")
    command = ["radfm", "data", "check", data_cfg.name]
    for item in sets:
        command += ["--set", item]
    return f"rm -r {shlex.quote(str(directory))} && {shlex.join(command)}"


def damaged_message(name: str, directory: Path, damaged: Sequence[DamagedShard], rebuild: str) -> str:
    """One line: the damaged shard files (the first few) and the rebuild command."""
    listed = "; ".join(d.describe() for d in damaged[:_LISTED])
    more = (f"; and {len(damaged) - _LISTED} more (`radfm data check` lists them all)"
            if len(damaged) > _LISTED else "")
    files = "shard file is" if len(damaged) == 1 else "shard files are"
    return (f"{len(damaged)} {files} damaged in the prepared data set {name} ({directory}): "
            f"{listed}{more}; rebuild the data set with: {rebuild}")


class ShardedSource:
    """A split's random-access source whose failed reads name their shard file: a DataError
    with the record, the reason and the rebuild command. No cost on a successful read."""

    def __init__(self, source: Any, builder: Any, split: str, name: str, rebuild: str):
        self._source = source
        self._name = name
        self._rebuild = rebuild
        instructions = list(builder.info.splits[split].file_instructions)
        # (file, first record read from it, records read from it), in record-key order
        self._files = tuple((str(i.filename), int(i.skip), int(i.take), int(i.examples_in_shard))
                            for i in instructions)
        self._ends = list(itertools.accumulate(take for _, _, take, _ in self._files))
        # A reader whose file lost its index returns b"" for every record, which TFDS decodes
        # into all-None features without an error: one feature, looked up, tells.
        keys = list(builder.info.features.keys())
        self._probe = "image" if "image" in keys else (keys[0] if keys else None)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: Any) -> Any:
        try:
            record = self._source[index]
        except _READ_ERRORS as err:
            raise self._error(index, err) from None
        if self._probe is not None and record[self._probe] is None:
            raise self._error(index, None)
        return record

    def _error(self, index: Any, err: BaseException | None) -> DataError:
        key = int(index)
        k = bisect.bisect_right(self._ends, key)
        if not 0 <= key < len(self) or k >= len(self._files):
            return DataError(f"cannot read record {key} of the prepared data set {self._name} "
                             f"({_short(err) if err is not None else 'it reads back empty'}); "
                             f"rebuild the data set with: {self._rebuild}")
        filename, skip, _, count = self._files[k]
        position = skip + key - (self._ends[k - 1] if k else 0)
        text = _short(err) if err is not None else ""
        if err is None or "Postscript" in text or "at least 64KB" in text:
            reason = _NO_INDEX
        else:
            reason = f"record {position} of its {count} unreadable: {text}"
        return DataError(f"shard file {filename} of the prepared data set {self._name} is damaged "
                         f"({reason}); `radfm data check` lists every damaged shard; rebuild the "
                         f"data set with: {self._rebuild}")

    def __repr__(self) -> str:
        return f"ShardedSource({self._source!r})"
