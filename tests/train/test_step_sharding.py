"""A train step of every objective on 8 fake devices (data=2, fsdp=4) equals the same step on
one device, on radiographs and on volumes (vit3d, local-global and factorised attention)."""

import jax
import numpy as np
import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import with_fields
from radfm_jax.config.schema import MeshConfig
from radfm_jax.train.experiment import Experiment
from adam_params import assert_params_close

VOCAB = 128
SEEDS = range(1, 4)  # the same three random batches on every mesh
# SigLIP (CLIP's towers) and MAE run one-block unrolled towers, which compile faster; the
# others the smoke configs' scanned layers (the scan under fsdp: the towers' and the report
# decoder's stacks).
UNROLLED = ["model.scan_layers=false", "model.image.depth=1"]
MAE = ("mae", UNROLLED)
CAPPA = ("captioner", ["objective.parallel_fraction=0.5"])  # half CapPa rows, half teacher-forced
COCA = ("coca", [])
CT_CLIP = ("synthetic_ct/clip", ["model.image.attention=local_global"])
CT_MAE = ("synthetic_ct/mae", ["model.image.attention=factorised", "model.scan_layers=false"])  # tube masks


def _config(experiment, overrides, *extra):
    """`experiment`: a synthetic_cxr experiment's name, or "<folder>/<name>"."""
    path = experiment if "/" in experiment else f"synthetic_cxr/{experiment}"
    return load_experiment(f"experiments/{path}.py:smoke",
                           ["optim.warmup_steps=1", "optim.learning_rate=1e-2", *overrides, *extra])


def _run(config, mesh_cfg: MeshConfig, devices, seeds, initial=None):
    """Losses, final parameters and state after a step on the batch of each seed (the same
    random batches whatever the mesh), and the initial state (on the host). `initial` (a host
    state) is put on the mesh in place of a freshly initialised one."""
    exp = Experiment.plan(with_fields(config, {"mesh": mesh_cfg}), VOCAB, devices=devices)
    state = exp.init_state() if initial is None else jax.device_put(initial, exp.layout.shardings)
    initial = jax.device_get(state)  # before the step donates it
    step = exp.train_step().jit()
    losses = []
    for seed in seeds:
        state, metrics = step(state, exp.random_batch(seed))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), state, initial


@pytest.fixture(scope="module")
def single_device():
    """`single_device(experiment, overrides)`: `_run` of the config on one device: the
    reference of both tests below; each is computed (compiled) once and shared."""
    runs = {}

    def run(experiment, overrides):
        key = (experiment, tuple(overrides))
        if key not in runs:
            losses, params, _, initial = _run(_config(experiment, overrides), MeshConfig(1, 1, 1, "fsdp"),
                                              jax.devices()[:1], SEEDS)
            runs[key] = losses, params, initial
        return runs[key]

    return run


@pytest.mark.parametrize("experiment, overrides", [
    ("clip", []), ("siglip", [*UNROLLED, "model.text.depth=1"]), MAE, CAPPA, COCA, CT_CLIP, CT_MAE,
], ids=["clip", "siglip", "mae", "captioner", "coca", "ct_clip", "ct_mae"])
def test_sharded_step_equals_single_device(experiment, overrides, single_device):
    single_losses, single_params, _ = single_device(experiment, overrides)
    sharded_mesh = MeshConfig(data=2, fsdp=4, tensor=1, rules="fsdp")
    # Initialised on the sharded mesh itself: the initial parameters must not depend on it.
    sharded_losses, sharded_params, state, _ = _run(_config(experiment, overrides), sharded_mesh, jax.devices(), SEEDS)

    # The parameters really are split over the fsdp axis.
    image_tower = state.params["image"] if "image" in state.params else state.params["encoder"]  # MAE
    kernel = image_tower["patch_embed"]["kernel"]
    assert "fsdp" in str(kernel.sharding.spec)
    assert len(kernel.addressable_shards) == 8
    assert kernel.addressable_shards[0].data.size == kernel.size // 4

    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5, atol=1e-6)
    assert single_losses[-1] != single_losses[0]  # the steps did update something
    assert_params_close(sharded_params, single_params, learning_rate=1e-2, steps=len(SEEDS), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("experiment, overrides", [MAE, CAPPA, COCA], ids=["mae", "captioner", "coca"])
def test_accumulated_step_equals_full_batch(experiment, overrides, single_device):
    """Microbatches see the random inputs (MAE masks, CapPa rows) the full batch draws, and
    CoCa's contrastive term goes through GradCache: two microbatches, data-parallel over two
    devices, equal one pass over the full batch. The full-batch reference is the one-device
    run (which the sharded steps above equal too), from the same initial state."""
    full_losses, full_params, initial = single_device(experiment, overrides)
    accumulated = _config(experiment, overrides, "optim.grad_accum_steps=2")
    mesh = MeshConfig(data=2, fsdp=1, tensor=1, rules="dp")
    micro_losses, micro_params, _, _ = _run(accumulated, mesh, jax.devices()[:2], SEEDS, initial=initial)
    np.testing.assert_allclose(micro_losses, full_losses, rtol=1e-5, atol=1e-6)
    assert full_losses[-1] != full_losses[0]  # the steps did update something
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), micro_params, full_params)
