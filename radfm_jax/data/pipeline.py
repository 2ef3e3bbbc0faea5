"""Grain input pipelines: prepared records -> fixed-shape host batches (NumPy dicts).

Training (``make_train_loader``)::

    MapDataset.source(records)
      .shuffle(s0)          global shuffle; epoch e uses Grain's per-epoch seed (s0 + e), so
      .repeat()             every epoch is reshuffled, infinitely, as a pure function of `seed`
      .map / .random_map    typed transforms (transforms_for: 2D or volume); a random transform's
                            generator is seeded from (its seed, the element's position in the
                            infinite shuffled stream), so augmentation does not depend on the
                            number of processes, workers or threads, nor on resumption
      .batch(L)             L = global_batch_size // process_count, drop_remainder
      [process_index::process_count]
      .to_iter_dataset(ReadOptions)   thread prefetch of whole local batches
      [.mp_prefetch(MultiprocessingOptions(worker_count))]  when data_cfg.worker_count > 0

Per-process sharding: global batch k is the contiguous run of elements [k*G, (k+1)*G) of the
shuffled stream (G = global batch size); process p receives rows [p*L, (p+1)*L) of it. So
concatenating the processes' local batches in process order gives the global batch in row order,
which is how ``jax.make_array_from_process_local_data`` lays out a batch sharded over processes.

The iterator is a ``grain.DatasetIterator``: ``it.get_state()`` / ``it.set_state(state)`` resume
at exactly the next batch. With Orbax, save it with ``grain.checkpoint.CheckpointSave(it)`` and
restore with ``grain.checkpoint.CheckpointRestore(it)`` inside ``ocp.args.Composite``.

All sub-seeds derive from the one ``seed`` through NumPy's SeedSequence (hashing), so run seeds
s and s + 1 do not share epochs the way Grain's raw ``seed + epoch`` would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np

from radfm_jax.config.schema import DataConfig
from radfm_jax.data import transforms as T
from radfm_jax.data import volume_transforms as VT
from radfm_jax.data.model_inputs import is_volume_dataset, volume_input_shape, volume_spacing
from radfm_jax.data.tokenizer import Tokenizer, train_tokenizer
from radfm_jax.errors import ConfigError

# Threads reading and transforming whole local batches in each reading process.
_DEFAULT_READ_THREADS = 8


def _derive_seeds(seed: int, n: int) -> list[int]:
    """n independent uint32 seeds from one run seed (deterministic)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    state = np.random.SeedSequence([int(seed), 0x5EED_DA7A]).generate_state(n, dtype=np.uint32)
    return [int(s) for s in state]


def _read_options(data_cfg: DataConfig) -> grain.ReadOptions:
    # Transforms are mostly GIL-bound NumPy: more threads than half the cores slow it down
    # (measured); one background thread still overlaps reading with the train step.
    threads = max(1, min(_DEFAULT_READ_THREADS, (os.cpu_count() or 2) // 2))
    # Elements here are whole batches: buffer a few per thread, not Grain's default of 500.
    return grain.ReadOptions(
        num_threads=threads, prefetch_buffer_size=max(2, 2 * threads, data_cfg.prefetch_batches)
    )


def _apply(ds: grain.MapDataset, transforms: Sequence[T.Transform], seeds: Sequence[int]):
    seeds = iter(seeds)
    for t in transforms:
        if isinstance(t, grain.transforms.RandomMap):
            ds = ds.random_map(t, seed=next(seeds))
        else:
            ds = ds.map(t)
    return ds


def transforms_for(
    tokenizer: Tokenizer, data_cfg: DataConfig, *, train: bool, label_names: Sequence[str] = ()
) -> list[T.Transform]:
    """The record -> model element transforms of data_cfg's data set, training (augmented when
    data_cfg.augment) or evaluation: the volume ones (volume_transforms, size
    volume_input_shape) when the data set is volumetric (model_inputs.is_volume_dataset), the 2D ones
    otherwise. label_names: the name of each "labels" column (a volume flip swaps lateral ones).
    """
    spacing = volume_spacing(data_cfg)  # checked for 2D sets too: there it is a mistake
    if is_volume_dataset(data_cfg.name):
        size = volume_input_shape(data_cfg)
        if train:
            return VT.volume_train_transforms(tokenizer, data_cfg, size, label_names, spacing)
        return VT.volume_eval_transforms(tokenizer, data_cfg, size, spacing)
    if train:
        return T.train_transforms(tokenizer, data_cfg)
    return T.eval_transforms(tokenizer, data_cfg)


def prepare_tokenizer(source: Any, vocab_size: int, path: str | os.PathLike) -> Tokenizer:
    """Loads the tokenizer at ``path``; trains it on ``source``'s reports first if it is missing.

    ``source`` is the *train* split (random access: len() and [i]); the caller keeps ``path``
    beside the prepared data set so every run on that data shares one vocabulary.
    """
    path = Path(path)
    if path.is_file():
        return Tokenizer.load(path)
    n = len(source)
    if n == 0:
        raise ValueError("Cannot train a tokenizer: the training split is empty.")
    return train_tokenizer((T.report_text(source[i]) for i in range(n)), vocab_size, path)


def _local_batch_size(name: str, batch_size: int, process_index: int, process_count: int) -> int:
    """This process's rows of each global batch, after checking the process layout."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process_index={process_index} / process_count={process_count}.")
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f"{name}={batch_size} must be a positive multiple of process_count={process_count}.")
    return batch_size // process_count


def make_train_loader(
    source: Any,
    *,
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    keys: Sequence[str] | None = None,
    extra_transforms: Sequence[T.Transform] = (),
    label_names: Sequence[str] = (),
) -> grain.DatasetIterator:
    """An infinite, checkpointable iterator of this process's share of each global batch.

    Yields {"image": float32 (L, H, W, C), "tokens": int32 (L, max_text_len),
    "labels": int8 (L, N)} with L = global_batch_size // process_count; for a volumetric data
    set "image" is (L, D, H, W, C) (transforms_for). `extra_transforms` (an objective's own,
    e.g. extra views) run after the standard ones, and `keys`, when given, are the entries kept
    (what the objective's batch holds). `label_names` name the "labels" columns (PreparedData
    .label_names): the volume left-right flip swaps the lateral ones.
    """
    local_batch = _local_batch_size("global_batch_size", global_batch_size, process_index, process_count)
    ds = grain.MapDataset.source(source)
    if len(ds) == 0:
        raise ValueError("The training split is empty.")
    transforms = [*transforms_for(tokenizer, data_cfg, train=True, label_names=label_names),
                  *extra_transforms]
    shuffle_seed, *aug_seeds = _derive_seeds(seed, 1 + len(transforms))
    ds = ds.shuffle(seed=shuffle_seed).repeat(None)
    ds = _apply(ds, transforms, aug_seeds)
    ds = ds.batch(local_batch, drop_remainder=True)
    if keys is not None:  # on whole batches: one dict per batch, not per example
        ds = ds.map(_Select(_check_keys(ds[0], keys)))
    ds = ds[process_index::process_count]
    it_ds = ds.to_iter_dataset(_read_options(data_cfg))
    if data_cfg.worker_count > 0:
        _require_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
    return iter(it_ds)


def _require_absl_flags_parsed() -> None:
    """Grain 0.2.18's worker processes read absl flags and fail in programs that never parsed
    them (google/grain#1355, fixed upstream by #1362). Parsing flags is the program's business:
    the radfm CLI does it; a library must not, so other programs are told how."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        raise ConfigError(
            "data.worker_count > 0 starts Grain worker processes, which read absl flags that this "
            "program has not parsed (Grain 0.2.18, google/grain#1355); call "
            "absl.flags.FLAGS.mark_as_parsed() first (the radfm CLI does), or set data.worker_count=0"
        )


def num_eval_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def make_eval_batches(
    source: Any,
    *,
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    batch_size: int,
    max_examples: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Every record of ``source`` (or the first max_examples) once, in order, no augmentation.

    Yields ceil(n / batch_size) batches of exactly batch_size // process_count rows with a bool
    "mask" marking real rows; padding rows are zeros. Row r of global batch k is record
    k * batch_size + r, and process p gets rows [p*L, (p+1)*L) of it (as in training), so all
    processes yield the same number of batches.
    """
    local_batch = _local_batch_size("eval batch_size", batch_size, process_index, process_count)
    ds = grain.MapDataset.source(source)
    n = len(ds) if max_examples <= 0 else min(len(ds), max_examples)
    if n == 0:
        return
    ds = _apply(ds[:n], transforms_for(tokenizer, data_cfg, train=False), ()).map(_AddMask(True))
    padding = num_eval_batches(n, batch_size) * batch_size - n
    if padding:
        blank = _AddMask(False).map({k: np.zeros_like(v) for k, v in ds[0].items()})
        pad_ds = grain.MapDataset.range(padding).map(_Constant(blank))
        ds = grain.MapDataset.concatenate([ds, pad_ds])
    ds = ds.batch(local_batch, drop_remainder=True)[process_index::process_count]
    it = iter(ds.to_iter_dataset(_read_options(data_cfg)))
    try:
        yield from it
    finally:
        it.close()


def _check_keys(example: dict, keys: Sequence[str]) -> tuple[str, ...]:
    missing = [key for key in keys if key not in example]
    if missing:
        raise ConfigError(f"the objective's batch needs {missing}, but the data pipeline yields {sorted(example)}; "
                          "add a transform that makes them (Objective.data_transforms)")
    return tuple(keys)


class _Select(grain.transforms.Map):
    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys

    def map(self, element):
        return {key: element[key] for key in self.keys}


class _AddMask(grain.transforms.Map):
    def __init__(self, value: bool):
        self.value = bool(value)

    def map(self, element):
        return {**element, "mask": np.bool_(self.value)}


class _Constant(grain.transforms.Map):
    def __init__(self, element):
        self.element = element

    def map(self, _):
        return self.element
