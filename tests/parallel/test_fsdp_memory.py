"""Memory levers of the train state on 8 devices: FSDP splits parameters and optimizer state
8 ways (dp keeps a full copy per device) with the same losses; bfloat16 compute keeps the
state float32 while the matmuls run in bfloat16."""

from __future__ import annotations

import collections
import re

import jax
import numpy as np

from radfm_jax.config.schema import MeshConfig

BATCH = 16
FSDP = MeshConfig(data=1, fsdp=8, tensor=1, rules="fsdp")
DP = MeshConfig(data=8, fsdp=1, tensor=1, rules="dp")
# Widths divisible by 8 so every matrix splits over fsdp=8 along its `embed` axis.
WIDE = {"model.image.width": 64, "model.text.width": 64, "model.embed_dim": 32}


def _train(exp, seeds) -> tuple[dict, int, list[float]]:
    """Per-device bytes of params + optimizer state, their total, and the losses."""
    state = exp.init_state()
    arrays = jax.tree.leaves((state.params, state.opt_state))
    per_device: dict = collections.Counter()
    for array in arrays:
        for shard in array.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    total = sum(array.nbytes for array in arrays)
    run = exp.train_step().jit()
    losses = []
    for seed in seeds:
        state, metrics = run(state, exp.random_batch(seed))
        losses.append(float(metrics["loss"]))
    return per_device, total, losses


def test_fsdp_splits_state_eight_ways_with_the_same_losses(toy_experiment) -> None:
    seeds = range(3)  # the same three batches on both meshes
    fsdp_bytes, total, fsdp_losses = _train(toy_experiment(FSDP, batch_size=BATCH, changes=WIDE), seeds)
    dp_bytes, dp_total, dp_losses = _train(toy_experiment(DP, batch_size=BATCH, changes=WIDE), seeds)
    assert total == dp_total and len(fsdp_bytes) == len(dp_bytes) == 8
    print(f"params + optimizer state: {total} bytes; per device fsdp {max(fsdp_bytes.values())}, dp {max(dp_bytes.values())}")
    # dp: every device holds everything. fsdp: an eighth, plus the few vectors without an
    # `embed` axis that stay replicated (q/v and MLP biases: 0.7% of the bytes here, which
    # adds 8 x 0.7% to a device's eighth) and the scalars.
    assert set(dp_bytes.values()) == {total}
    for nbytes in fsdp_bytes.values():
        assert total / 8 <= nbytes <= 1.1 * total / 8
    np.testing.assert_allclose(fsdp_losses, dp_losses, rtol=1e-5)
    assert fsdp_losses[-1] != fsdp_losses[0]


def _dot_operand_types(stablehlo: str) -> list[str]:
    """Element type of each dot_general's first operand in a StableHLO module."""
    return re.findall(r"stablehlo\.dot_general.*?: \(tensor<[^>]*?x?(bf16|f32)>", stablehlo)


def test_bfloat16_compute_keeps_float32_state(toy_experiment) -> None:
    dots = {}
    for name in ("float32", "bfloat16"):
        exp = toy_experiment(FSDP, batch_size=BATCH, changes={**WIDE, "model.compute_dtype": name})
        layout = exp.layout
        lowered = exp.train_step().jit().lower(layout.abstract, exp.abstract_batch())  # traced, not compiled
        new_state = lowered.out_info[0]
        for leaf in jax.tree.leaves((layout.abstract.params, layout.abstract.opt_state, new_state.params,
                                     new_state.opt_state)):
            assert leaf.dtype in (np.float32, np.int32), (name, leaf)
        dots[name] = collections.Counter(_dot_operand_types(lowered.as_text()))
    print("dot_general operand types:", dots)
    assert dots["float32"]["bf16"] == 0 and dots["float32"]["f32"] > 0
    # The towers' matmuls run in bfloat16; the contrastive logits stay float32 by design.
    assert dots["bfloat16"]["bf16"] > dots["bfloat16"]["f32"] > 0
