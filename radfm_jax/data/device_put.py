"""Host batches -> global jax.Arrays on the device mesh, and prefetching onto devices."""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import grain
import jax
import numpy as np

ShardingTree = jax.sharding.Sharding | Mapping[str, Any]


def to_global_batch(host_batch: Mapping[str, np.ndarray], sharding: ShardingTree) -> dict:
    """Assembles this process's rows into global arrays with jax.make_array_from_process_local_data.

    ``sharding`` is one sharding used for every entry (e.g. NamedSharding(mesh, P(("data",
    "fsdp")))), which shards the leading (batch) axis, or a dict of shardings with the batch's
    keys. Each process passes its local rows; the global batch is their concatenation in process
    order (see pipeline.make_train_loader), so the global leading size is local * process_count.
    """
    if isinstance(sharding, jax.sharding.Sharding):
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
                for k, v in host_batch.items()}
    missing = set(host_batch) - set(sharding)
    if missing:
        raise KeyError(f"no sharding given for batch keys {sorted(missing)}.")
    return {k: jax.make_array_from_process_local_data(sharding[k], np.asarray(v))
            for k, v in host_batch.items()}


def global_batch_from_full(host_batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict:
    """Global arrays from a batch that every process holds whole (e.g. zero-shot prompts):
    each device takes its slice of the full rows, so no process passes rows it does not own."""

    def place(value: np.ndarray) -> jax.Array:
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return {k: place(v) for k, v in host_batch.items()}


class DevicePrefetchIterator(grain.DatasetIterator):
    """Keeps ``size`` batches on devices ahead of the consumer.

    Checkpointable like the host iterator it wraps: ``get_state()`` is the host state from just
    before the next batch *this* iterator will yield was read, so saving it (e.g. with
    ``grain.checkpoint.CheckpointSave(prefetcher)``) resumes exactly at the first batch not
    yet consumed, not at the host iterator's read-ahead position. ``set_state`` drops the buffer.
    """

    def __init__(self, host_iterator: Iterator, size: int, sharding: ShardingTree):
        parents = host_iterator if isinstance(host_iterator, grain.DatasetIterator) else ()
        super().__init__(parents)
        self._host = host_iterator
        self._size = max(int(size), 0)
        self._sharding = sharding
        self._buffer: collections.deque = collections.deque()  # (host state before, batch)
        self._exhausted = False

    def _host_state(self):
        get_state = getattr(self._host, "get_state", None)
        return copy.deepcopy(get_state()) if get_state is not None else None

    def _fill(self, n: int) -> None:
        while not self._exhausted and len(self._buffer) < n:
            state = self._host_state()
            try:
                batch = next(self._host)
            except StopIteration:
                self._exhausted = True
                return
            self._buffer.append((state, to_global_batch(batch, self._sharding)))

    def __next__(self) -> dict:
        self._assert_not_closed()
        self._fill(self._size + 1)
        if not self._buffer:
            raise StopIteration
        _, batch = self._buffer.popleft()
        self._fill(self._size)  # start the next transfers before the caller's step runs
        return batch

    def get_state(self) -> dict[str, Any]:
        if self._buffer:
            return self._buffer[0][0]
        state = self._host_state()
        if state is None:
            raise TypeError(f"{type(self._host).__name__} has no get_state(); cannot checkpoint.")
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._buffer.clear()
        self._exhausted = False
        self._host.set_state(state)

    def __str__(self) -> str:
        return f"DevicePrefetchIterator(size={self._size})"


def prefetch_to_device(
    iterator: Iterator[Mapping[str, np.ndarray]], size: int, sharding: ShardingTree
) -> DevicePrefetchIterator:
    """Yields global device batches, keeping ``size`` of them transferred ahead (0 = no read-ahead)."""
    return DevicePrefetchIterator(iterator, size, sharding)
