"""Orbax checkpoints at WORKDIR/checkpoints: train state, data-iterator state and metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from radfm_jax.config.overrides import ConfigError


class CheckpointError(ConfigError):
    """A checkpoint that cannot be restored (corrupt, or from another model)."""


def make_manager(workdir: Path, *, keep: int) -> ocp.CheckpointManager:
    """The loop decides when to save (every checkpoint_every steps, the last step, on SIGTERM)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(
        (Path(workdir) / "checkpoints").absolute(),
        item_names=("state", "data", "metadata"),
        options=options,
    )


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_state: dict,
    metadata: dict,
) -> bool:
    """Queue an asynchronous save; returns whether one was started."""
    return manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            metadata=ocp.args.JsonSave(metadata),
        ),
        force=True,
    )


def restore(
    manager: ocp.CheckpointManager, step: int, abstract_state: Any, shardings: Any
) -> tuple[Any, dict, dict]:
    """Restore (state placed in `shardings`, data-iterator state, metadata)."""
    target = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        abstract_state,
        shardings,
    )
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                metadata=ocp.args.JsonRestore(),
            ),
        )
    except Exception as err:  # orbax raises many types for unreadable or mismatched files
        path = Path(manager.directory) / str(step)
        raise CheckpointError(
            f"cannot restore the checkpoint at {path} ({type(err).__name__}: {str(err)[:300]}). "
            "If it is corrupt, move that step folder aside to resume from an earlier one, or "
            "start in a new workdir"
        ) from None
    return restored.state, restored.data, restored.metadata


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
    return manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata
