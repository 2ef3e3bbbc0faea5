"""A closed-form estimate of per-chip memory of a train step, to check XLA's memory analysis:

    per chip = 16 * P / state shards                parameters, gradients, Adam mu and nu (f32)
             + examples per chip * activations per example

Activations per example are the objective's own estimate (Objective.activation_bytes_per_example,
from its towers' block stacks: models/costs.py explains every term and what is not modelled).
With gradient accumulation only one microbatch's activations are live.

`radfm compile` checks the sum against XLA's total and the activations against XLA's
temporaries less one gradient copy (tools/aot_compile.py, MemoryBreakdown).
"""

from __future__ import annotations

import dataclasses

from radfm_jax.objectives.base import Objective

OPTIMIZER_STATE_BYTES_PER_PARAM = 16  # f32 parameters, gradients, Adam mu and nu


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    state_bytes: float  # parameters, gradients and optimizer moments on one chip
    activation_bytes: float  # saved activations and one block's backward working set

    @property
    def total_bytes(self) -> float:
        return self.state_bytes + self.activation_bytes


def estimate_memory_per_chip(objective: Objective, num_params: int, state_shards: int,
                             batch_shards: int) -> MemoryEstimate:
    """`state_shards`: how many ways parameters are split (all chips under a full FSDP mesh,
    1 under data parallelism); `batch_shards`: how many ways the global batch is split."""
    config = objective.config
    live_examples = config.batch_size / batch_shards / config.optim.grad_accum_steps
    return MemoryEstimate(
        state_bytes=OPTIMIZER_STATE_BYTES_PER_PARAM * num_params / state_shards,
        activation_bytes=live_examples * objective.activation_bytes_per_example(),
    )
