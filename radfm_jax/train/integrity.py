"""What a checkpoint must prove before it is written and after it is read: a state with no
non-finite number, and per-array checksums that catch flipped bits the storage layer passes on.

Both are computed on the devices (one small reduction per array, all in one jitted call) and
fetched with one host transfer, at save and restore only: never inside the step loop."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_WORD = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def leaf_name(path) -> str:
    """"params.image.pos_emb" for a tree path (orbax stores named tuples as dicts and tuples as
    lists, so names are compared, not key types)."""

    def name(key) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return ".".join(name(key) for key in path)


def _words(x: jax.Array) -> jax.Array:
    """The array's bits as unsigned 32-bit words, in its own shape (8-byte types gain a
    trailing axis of two words). No reshape, so a sharded array is summed where it lies."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jax.lax.bitcast_convert_type(x, _WORD[x.dtype.itemsize]).astype(jnp.uint32)


def _positions(shape: tuple[int, ...]) -> jax.Array:
    """Each element's row-major position, built from per-axis iotas (mod 2**32)."""
    position = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        position = position + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    return position


def _checksum(x: jax.Array) -> jax.Array:
    """Two sums of the array's words mod 2**32: plain, and weighted by odd position weights.
    Odd weights are invertible mod 2**32, so any change to one word changes both sums; the
    weighted one also sees words moved to other positions."""
    words = _words(x)
    weights = _positions(words.shape) * jnp.uint32(2) + jnp.uint32(1)
    return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


@jax.jit
def _checksums(tree: Any) -> Any:
    return jax.tree.map(_checksum, tree)


def array_checksums(tree: Any) -> dict[str, list[int]]:
    """{leaf name: [sum, weighted sum]} of every array in `tree` (one host transfer)."""
    sums = jax.device_get(_checksums(tree))
    return {leaf_name(path): [int(v) for v in np.asarray(value)]
            for path, value in jax.tree_util.tree_leaves_with_path(sums)}


def mismatched(recorded: dict[str, list[int]], tree: Any) -> list[str]:
    """Names of the arrays in `tree` whose checksum differs from the recorded one (arrays the
    record lacks are not judged: a checkpoint written before checksums existed has none)."""
    actual = array_checksums(tree)
    return [name for name, sums in actual.items() if name in recorded and list(recorded[name]) != sums]


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point number in `tree` is finite, as a device scalar."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)
