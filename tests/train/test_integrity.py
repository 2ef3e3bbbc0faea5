"""Checkpoint integrity: per-array checksums against a NumPy reference (every dtype a train
state holds, sharded or not), the bit flips they must catch, the finiteness check, and how a
full disk is recognised in the errors orbax, tensorstore and Python raise."""

from __future__ import annotations

import errno

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from radfm_jax.reporting import out_of_space
from radfm_jax.train.integrity import all_finite, array_checksums, mismatched


def numpy_checksum(x: np.ndarray) -> list[int]:
    """The definition, written independently: unsigned words (8-byte types as two 32-bit
    words in memory order), plain sum and sum weighted by 2*position+1, both mod 2**32."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        words = x.astype(np.uint64).ravel()
    else:
        unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[x.dtype.itemsize]
        words = x.view(unsigned).astype(np.uint64).ravel()
    weights = 2 * np.arange(words.size, dtype=np.uint64) + 1
    return [int(words.sum() % 2**32), int((words * weights % 2**32).sum() % 2**32)]


def test_checksums_equal_the_numpy_definition_for_every_dtype():
    rng = np.random.default_rng(0)
    tree = {
        "f32": rng.normal(size=(3, 5)).astype(np.float32),
        "bf16": rng.normal(size=(4, 2, 3)).astype(jnp.bfloat16),
        "i32": rng.integers(-2**31, 2**31 - 1, size=(7,), dtype=np.int32),
        "u8": rng.integers(0, 255, size=(9,), dtype=np.uint8),
        "mask": rng.random(6) > 0.5,
        "step": np.int32(123456),
    }
    got = array_checksums(jax.tree.map(jnp.asarray, tree))
    assert got == {name: numpy_checksum(np.asarray(value)) for name, value in tree.items()}


def test_a_sharded_array_has_the_checksum_of_its_unsharded_value():
    x = np.random.default_rng(1).normal(size=(8, 12)).astype(np.float32)
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 4), ("a", "b"))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("b", "a")))  # columns split too
    assert array_checksums({"x": sharded}) == {"x": numpy_checksum(x)}


@pytest.mark.parametrize("bit", [0, 7, 22, 31])
def test_one_flipped_bit_anywhere_is_caught(bit):
    x = np.random.default_rng(2).normal(size=(16, 16)).astype(np.float32)
    recorded = array_checksums({"x": jnp.asarray(x), "y": jnp.ones(3)})
    for index in [(0, 0), (7, 3), (15, 15)]:
        damaged = x.copy()
        damaged.view(np.uint32)[index] ^= np.uint32(1 << bit)
        assert mismatched(recorded, {"x": jnp.asarray(damaged), "y": jnp.ones(3)}) == ["x"]
    assert mismatched(recorded, {"x": jnp.asarray(x), "y": jnp.ones(3)}) == []


def test_swapped_words_are_caught_by_the_weighted_sum():
    x = np.arange(10, dtype=np.float32)
    recorded = array_checksums({"x": jnp.asarray(x)})
    assert mismatched(recorded, {"x": jnp.asarray(x[::-1].copy())}) == ["x"]


def test_arrays_without_a_record_are_not_judged():
    assert mismatched({}, {"x": jnp.ones(3)}) == []


def test_all_finite_looks_at_every_floating_leaf_only():
    good = {"a": jnp.ones((2, 2)), "b": jnp.zeros(3, jnp.bfloat16), "count": jnp.int32(5)}
    assert bool(all_finite(good))
    for bad in (np.nan, np.inf, -np.inf):
        assert not bool(all_finite({**good, "b": jnp.array([0.0, bad, 1.0], jnp.bfloat16)}))


def test_out_of_space_is_recognised_with_the_path_being_written():
    os_error = OSError(errno.ENOSPC, "No space left on device", "/data/run/metrics.jsonl")
    assert out_of_space(os_error) == "/data/run/metrics.jsonl"
    # tensorstore's wording, as orbax raises it from a failed asynchronous write
    orbax = ValueError('RESOURCE_EXHAUSTED: Error writing "params.w/0.0" in OCDBT database at local file '
                       '"/ckpt/9.orbax-checkpoint-tmp/state/": Failed writing: "/ckpt/9.orbax-checkpoint-tmp/'
                       'state/d/abc": Failed to write 70853 bytes to file 9: No space left on device '
                       "[os_error_code='28']")
    assert out_of_space(orbax) == "/ckpt/9.orbax-checkpoint-tmp/state/d/abc"
    try:
        try:
            raise orbax
        except ValueError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert out_of_space(outer) == "/ckpt/9.orbax-checkpoint-tmp/state/d/abc"
    assert out_of_space(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert out_of_space(ValueError("shapes differ")) is None
