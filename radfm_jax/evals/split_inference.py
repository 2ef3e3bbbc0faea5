"""Runs predict functions over an evaluation split on padded, masked global batches (fixed
shapes, so each compiles once) and gathers the real rows to every process, which then all
compute the same metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.data.pipeline import make_eval_batches
from radfm_jax.data.tokenizer import Tokenizer
from radfm_jax.parallel.mesh import batch_sharding
from radfm_jax.parallel.multihost import gather_to_host

# batch (global arrays "image", "tokens", "mask", batch index "index") -> (B, ...) outputs
BatchFn = Callable[[Mapping[str, jax.Array]], jax.Array]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_targets(source: Any, max_examples: int = 0) -> tuple[list[str], np.ndarray]:
    """Reference reports and label rows of the first max_examples records (0 = all)."""
    count = len(source) if max_examples <= 0 else min(len(source), max_examples)
    records = [source[i] for i in range(count)]
    reports = [_text(r["report"]) for r in records]
    return reports, np.stack([r["labels"] for r in records]) if records else np.zeros((0, 0), np.int8)


# Per-record attributes evaluations group or resample by; a data set without one stores a
# neutral value ("" or -1) and a subgroup analysis of it reports "unknown".
METADATA_FIELDS = ("patient_id", "study_id", "sex", "age", "view")


def read_metadata(source: Any, max_examples: int = 0) -> dict[str, np.ndarray]:
    """{field: (N,) array} of METADATA_FIELDS for the first max_examples records (0 = all)."""
    count = len(source) if max_examples <= 0 else min(len(source), max_examples)
    columns: dict[str, list] = {name: [] for name in METADATA_FIELDS}
    for i in range(count):
        record = source[i]
        for name in METADATA_FIELDS:
            value = record.get(name, -1 if name == "age" else "")
            columns[name].append(int(value) if name == "age" else _text(value))
    return {name: np.asarray(values) for name, values in columns.items()}


def run_over_split(
    source: Any,
    fns: Mapping[str, BatchFn],
    *,
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    batch_size: int,
    mesh: Mesh,
    max_examples: int = 0,
    image_transform: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """name -> the concatenated outputs of fns[name] on every real row, in record order.
    `image_transform(images, batch index)` changes each host batch's images first (e.g. a
    robustness perturbation)."""
    sharding = batch_sharding(mesh)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    batches = make_eval_batches(source, tokenizer=tokenizer, data_cfg=data_cfg, batch_size=batch_size,
                                max_examples=max_examples, process_index=jax.process_index(),
                                process_count=jax.process_count())
    for index, host_batch in enumerate(batches):
        if image_transform is not None:
            host_batch = {**host_batch, "image": image_transform(host_batch["image"], index)}
        batch = to_global_batch({k: host_batch[k] for k in ("image", "tokens", "mask")}, sharding)
        batch["index"] = index
        got = gather_to_host({**{name: fn(batch) for name, fn in fns.items()}, "mask": batch["mask"]})
        mask = np.asarray(got["mask"], bool)
        for name in fns:
            parts[name].append(np.asarray(got[name])[mask])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}
