"""`radfm compile`'s per-chip memory breakdown on the 8 fake CPU devices of conftest.py: it sums
to XLA's total, its argument parts are the train state's and batch's shard bytes, FSDP splits
parameters and optimizer state 8 ways, and each objective's activation estimate is within 20%
of XLA's temporaries less one gradient copy."""

from __future__ import annotations

import math

import jax
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.tools.aot_compile import AotReport, compile_train_step
from radfm_jax.train.experiment import Experiment

# 8 examples per device: activations dominate the temporaries. At the smoke configs' own batch
# (2 per device) the one gradient copy taken out of the temporaries is as large as the
# activations and not all of it is live at their peak (MAE: XLA 0.72x the estimate).
BATCH = ["batch_size=64"]
OBJECTIVES = ("clip", "siglip", "mae", "captioner", "coca", "dino")


def _independent_shard_bytes(abstract, shardings) -> int:
    """Per device: each leaf's bytes divided by the mesh axes its PartitionSpec names."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        ways = 1
        for axes in sharding.spec:
            for axis in (axes,) if isinstance(axes, str) else axes or ():
                ways *= sharding.mesh.shape[axis]
        total += math.prod(leaf.shape) * leaf.dtype.itemsize // ways
    return total


# CLIP is compiled fully sharded (mesh.fsdp=8): one compile checks the sums, the shards and the
# 8-way split. The smoke widths (32, MLP 128, vocabulary 256) divide 8; what stays replicated
# are the scalars and the (layers, heads=2, head_dim=16) query / value biases.
OVERRIDES = {"clip": ["mesh.data=1", "mesh.fsdp=8", "mesh.rules=fsdp"]}


def _config(name: str):
    return load_experiment(f"experiments/synthetic_cxr/{name}.py:smoke", [*BATCH, *OVERRIDES.get(name, [])])


@pytest.fixture(scope="module")
def reports() -> dict[str, AotReport]:
    return {}


def _report(reports: dict[str, AotReport], name: str) -> AotReport:
    if name not in reports:
        reports[name] = compile_train_step(_config(name))
    return reports[name]


def test_breakdown_sums_to_xla_total_and_arguments_are_the_shards(reports):
    report, exp = _report(reports, "clip"), Experiment.plan(_config("clip"))
    b, m = report.breakdown, report.memory
    assert b.total == m.total == m.argument + m.output - m.alias + m.temp + m.generated_code
    layout = exp.layout
    assert b.parameters == _independent_shard_bytes(layout.abstract.params, layout.shardings.params)
    assert b.optimizer_state == _independent_shard_bytes(layout.abstract.opt_state, layout.shardings.opt_state)
    batch = exp.abstract_batch()
    assert b.batch == _independent_shard_bytes(batch, {k: v.sharding for k, v in batch.items()})
    # XLA:CPU stores shards unpadded: the parts are the whole argument size.
    assert b.other_arguments == 0 and b.layout_padding in (0, None)
    assert b.gradients == b.parameters  # every parameter trains, f32 like its gradient
    assert b.temporaries == m.temp
    assert report.to_dict()["breakdown"]["total"] == m.total


def test_fsdp_splits_parameters_and_optimizer_state_eight_ways(reports):
    report = _report(reports, "clip")
    assert report.mesh["fsdp"] == 8
    assert report.breakdown.state_vs_analytic == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_activation_estimate_within_20_percent_of_xla(reports, name):
    report = _report(reports, name)
    xla = report.breakdown.activations_and_scratch
    assert xla == pytest.approx(report.estimated_activation_bytes, rel=0.20)


# vit3d's 3D layouts under the CT recipe's remat=full (experiments/ct/ct_rate_clip.py): 32 x 64 x
# 64 volumes, an 8 x 8 x 8 token grid (factorised: 8 slices of 64 tokens, then depth attention
# over 8; local_global: two scanned groups of a slab layer and a global layer), 8 examples per
# device so the image tower's activations dominate. Counting a factorised layer's spatial and
# depth attention as separate one-slice blocks gave 1/5 of XLA's bytes here. Float32: XLA:CPU
# computes bfloat16 matmuls in float32 and stores more than a TPU would.
@pytest.mark.parametrize("attention", ["factorised", "local_global"])
def test_vit3d_activation_estimate_within_20_percent_of_xla(attention):
    config = load_experiment("experiments/ct/ct_rate_clip.py:smoke", [
        *BATCH, f"model.image.attention={attention}", "model.image.depth=4", "model.remat=full",
        "data.image_size=64", "data.input_size=64",
    ])
    report = compile_train_step(config)
    xla = report.breakdown.activations_and_scratch
    assert xla == pytest.approx(report.estimated_activation_bytes, rel=0.20)
