"""Orbax checkpoints at WORKDIR/checkpoints: train state, data-iterator state and metadata.

Every process calls save and restore. The train state is one sharded array tree; the
data-iterator state is per process (Grain's handler: data/process_<i>-of-<n>.json), since each
process reads its own rows of every batch."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from radfm_jax.errors import CheckpointError, DamagedCheckpointError
from radfm_jax.reporting import filter_abandoned_reads
from radfm_jax.train.integrity import array_checksums, leaf_name, mismatched
from radfm_jax.train.paths import workdir_path

DAMAGED_DIR = "damaged_checkpoints"


def make_manager(workdir: epath.PathLike, *, keep: int) -> ocp.CheckpointManager:
    """The loop decides when to save (every checkpoint_every steps, the last step, on SIGTERM)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(
        workdir_path(workdir) / "checkpoints",
        item_names=("state", "data", "metadata"),
        options=options,
    )


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_iterator: grain.DatasetIterator,
    metadata: dict,
) -> bool:
    """Queue an asynchronous save; returns whether one was started. The iterator's state is
    read before this returns (the data item is written synchronously). The metadata gains
    every array's checksum, which restore verifies."""
    metadata = {**metadata, "checksums": array_checksums(state)}
    return manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            metadata=ocp.args.JsonSave(metadata),
        ),
        force=True,
    )


def restore(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_state: Any,
    shardings: Any,
    data_iterator: grain.DatasetIterator | None = None,
) -> tuple[Any, dict]:
    """Restore (state placed in `shardings`, metadata); `data_iterator`, when given, is moved
    to this process's saved position.

    Raises DamagedCheckpointError when the step's files cannot be read or its arrays differ
    from their checksums at save; CheckpointError, with what to do, when they were written by
    a model of other shapes or by another number of processes."""
    path = epath.Path(manager.directory) / str(step)
    _check_compatible(path, abstract_state)
    target = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract_state,
        shardings,
    )
    items = dict(state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore())
    if data_iterator is not None:
        _check_process_count(path)
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:  # orbax raises many types for unreadable or mismatched files
        raise _unreadable(path, err) from None
    damaged = mismatched(restored.metadata.get("checksums", {}), restored.state)
    if damaged:
        listing = ", ".join(damaged[:3]) + (f" and {len(damaged) - 3} more" if len(damaged) > 3 else "")
        raise _damaged(path, f"{len(damaged)} array(s) differ from their checksums at save: {listing}")
    return restored.state, restored.metadata


def _check_process_count(path: epath.Path) -> None:
    """Each process resumes its own slice of the data order, so the count must not change."""
    wanted = path / "data" / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if wanted.is_file():
        return
    written = sorted(p.name for p in (path / "data").glob("process_*-of-*.json"))
    if not written:
        raise _unreadable(path, FileNotFoundError(f"no data-iterator state in {path / 'data'}"))
    counts = sorted({name.rsplit("-of-", 1)[1].removesuffix(".json") for name in written})
    raise CheckpointError(
        f"the checkpoint at {path} was written by {' or '.join(counts)} process(es), this run has "
        f"{jax.process_count()} (no {wanted.name}); resume with the same number of processes"
    )


def _unreadable(path: epath.Path, err: Exception) -> DamagedCheckpointError:
    detail = str(err).split("[tensorstore_spec=")[0].strip().splitlines()
    detail = detail[0] if detail else ""
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return _damaged(path, f"cannot read it: {type(err).__name__}: {detail}")


def _damaged(path: epath.Path, why: str) -> DamagedCheckpointError:
    return DamagedCheckpointError(
        f"the checkpoint at {path} is damaged or incomplete ({why}): move that step folder out of "
        "checkpoints/ to resume from an earlier step, or start in a new workdir",
        step=int(path.name),
    )


def set_aside(manager: ocp.CheckpointManager, step: int) -> epath.Path:
    """Move a damaged step out of checkpoints/ into WORKDIR/damaged_checkpoints/ (kept for the
    user, never deleted) and make the manager forget it; returns where it went."""
    source = epath.Path(manager.directory) / str(step)
    target = source.parent.parent / DAMAGED_DIR / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    manager.reload()
    return target


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"opt_state.1.0.mu.image.pos_emb": shape} for a train state or orbax's tree metadata."""
    return {leaf_name(path): tuple(getattr(leaf, "shape", ())) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _check_compatible(path: epath.Path, abstract_state: Any) -> None:
    """Compare the stored arrays' names and shapes with the state this config builds, so a
    checkpoint of another model gets a message naming the parameters, not an orbax error."""
    handler = ocp.StandardCheckpointHandler()
    try:
        stored = _flat_shapes(handler.metadata(epath.Path(path / "state")))
    except Exception as err:
        raise _unreadable(path, err) from None
    finally:
        handler.close()
    wanted = _flat_shapes(abstract_state)
    problems = [
        f"{key}: stored {stored[key]}, this config needs {shape}"
        for key, shape in wanted.items()
        if key in stored and stored[key] != shape
    ]
    problems += [f"{key}: not in the checkpoint" for key in wanted if key not in stored]
    problems += [f"{key}: in the checkpoint, not in this config's model" for key in stored if key not in wanted]
    if problems:
        listing = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(
            f"the checkpoint at {path} was written by a different model or optimizer than this "
            f"config's:\n  {listing}\nTrain this config in a new workdir (or restore the workdir's "
            "earlier config.json to continue that run)"
        )


@contextlib.contextmanager
def quiet_abandoned_reads() -> Iterator[None]:
    """filter_abandoned_reads around a call (the `radfm` command keeps it for its whole process,
    since some reports arrive after the command has returned)."""
    restore = filter_abandoned_reads()
    try:
        yield
    finally:
        restore()


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
    return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata
