"""Memory levers of the train state on 8 devices: FSDP splits parameters and optimizer state
8 ways (dp keeps a full copy per device) with the same losses; bfloat16 compute keeps the
state float32 while the matmuls run in bfloat16."""

from __future__ import annotations

import collections
import dataclasses
import re

import jax
import numpy as np
from flax import nnx

from radfm_jax.config.schema import (
    ImageTowerConfig,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    TextTowerConfig,
)
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.models.two_tower import TwoTower
from radfm_jax.objectives import CONTRASTIVE_OBJECTIVES
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.optimizer import learning_rate_schedule, make_optimizer
from radfm_jax.train.state import init_train_state, plan_state
from radfm_jax.train.step import batch_shardings, build_train_step

# Widths divisible by 8 so every matrix splits over fsdp=8 along its `embed` axis.
MODEL = ModelConfig(
    image=ImageTowerConfig(patch_size=8, width=64, depth=1, heads=2, pool="mean"),
    text=TextTowerConfig(width=64, depth=1, heads=2, pool="mean"),
    embed_dim=32,
    scan_layers=False,
)
OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=0)
IMAGE, TEXT_LEN, VOCAB, BATCH = 16, 8, 64, 16
FSDP = MeshConfig(data=1, fsdp=8, tensor=1, rules="fsdp")
DP = MeshConfig(data=8, fsdp=1, tensor=1, rules="dp")


def _setup(mesh_cfg: MeshConfig, model_cfg: ModelConfig = MODEL):
    mesh = make_mesh(mesh_cfg)

    def factory() -> TwoTower:
        return TwoTower(model_cfg, VOCAB, TEXT_LEN, IMAGE, rngs=nnx.Rngs(0))

    tx = make_optimizer(OPTIM, 10)
    layout = plan_state(factory, tx, mesh, mesh_cfg.rules)
    step = build_train_step(layout, tx, CONTRASTIVE_OBJECTIVES["clip"], learning_rate_schedule(OPTIM, 10), mesh)
    return mesh, factory, tx, layout, step


def _batches(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.normal(size=(BATCH, IMAGE, IMAGE, 1)).astype(np.float32),
            "tokens": rng.integers(1, VOCAB, (BATCH, TEXT_LEN)).astype(np.int32),
            "labels": np.zeros((BATCH, 7), np.int8),
        }
        for _ in range(count)
    ]


def _train(mesh_cfg: MeshConfig, batches) -> tuple[dict, int, list[float]]:
    """Per-device bytes of params + optimizer state, their total, and the losses."""
    mesh, factory, tx, layout, step = _setup(mesh_cfg)
    state = init_train_state(layout, factory, tx)
    arrays = jax.tree.leaves((state.params, state.opt_state))
    per_device: dict = collections.Counter()
    for array in arrays:
        for shard in array.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    total = sum(array.nbytes for array in arrays)
    run = step.jit()
    losses = []
    for batch in batches:
        state, metrics = run(state, to_global_batch(batch, batch_shardings(mesh)))
        losses.append(float(metrics["loss"]))
    return per_device, total, losses


def test_fsdp_splits_state_eight_ways_with_the_same_losses() -> None:
    batches = _batches(3)
    fsdp_bytes, total, fsdp_losses = _train(FSDP, batches)
    dp_bytes, dp_total, dp_losses = _train(DP, batches)
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


def test_bfloat16_compute_keeps_float32_state() -> None:
    bf16_model = dataclasses.replace(MODEL, compute_dtype="bfloat16")
    dots = {}
    for name, model_cfg in (("float32", MODEL), ("bfloat16", bf16_model)):
        _, _, _, layout, step = _setup(FSDP, model_cfg)
        abstract_batch = {
            key: jax.ShapeDtypeStruct((BATCH, *value.shape[1:]), value.dtype)
            for key, value in _batches(1)[0].items()
        }
        lowered = step.jit().lower(layout.abstract, abstract_batch)  # traced, not compiled
        new_state = lowered.out_info[0]
        for leaf in jax.tree.leaves((layout.abstract.params, layout.abstract.opt_state, new_state.params,
                                     new_state.opt_state)):
            assert leaf.dtype in (np.float32, np.int32), (name, leaf)
        dots[name] = collections.Counter(_dot_operand_types(lowered.as_text()))
    print("dot_general operand types:", dots)
    assert dots["float32"]["bf16"] == 0 and dots["float32"]["f32"] > 0
    # The towers' matmuls run in bfloat16; the contrastive logits stay float32 by design.
    assert dots["bfloat16"]["bf16"] > dots["bfloat16"]["f32"] > 0
