"""Sweep specs (grid, isoflop, parameter counts, loading, TPU commands) and the nested
patient-level training subsets."""

import importlib.util
import json
import os
import shlex
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from radfm_jax.cli import main
from radfm_jax.config import presets
from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import apply_overrides
from radfm_jax.data.datasets import open_prepared
from radfm_jax.errors import ConfigError
from radfm_jax.objectives import make_objective
from radfm_jax.scaling.runner import emit_tpu_commands
from radfm_jax.scaling.sweep import Sweep, grid, isoflop, load_sweep, param_count

SMOKE = "experiments/synthetic_cxr/clip.py:smoke"
VOCAB = 256


@pytest.fixture(scope="module")
def base():
    return load_experiment(SMOKE)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    os.environ.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return os.environ["RADFM_DATA_DIR"]


def test_ladder_runs_from_a_cpu_size_to_vit_l_through_the_published_vits():
    sizes = presets.ladder()
    named = {s.name: (s.width, s.depth, s.heads) for s in sizes}
    # Dosovitskiy et al. (B, L) and Touvron et al. (Ti, S), Table 1 of each.
    assert named["Ti"] == (192, 12, 3) and named["S"] == (384, 12, 6)
    assert named["B"] == (768, 12, 12) and named["L"] == (1024, 24, 16)
    assert sizes[0].name == "XXS" and sizes[-1].name == "L"
    assert [s.width for s in sizes] == sorted(s.width for s in sizes)
    assert all(s.width % s.heads == 0 for s in sizes)


def _model_flops(config, vocab_size):
    return make_objective(config, vocab_size).flops().model


def _initialised_params(config, vocab_size):
    model = make_objective(config, vocab_size).model_factory()()
    return sum(np.asarray(leaf).size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_param_count_equals_the_initialised_models_leaves(base):
    assert param_count(base, VOCAB) == _initialised_params(base, VOCAB)


@pytest.mark.parametrize("scan", ["true", "false"])
def test_one_more_block_adds_a_pre_norm_blocks_parameters(base, scan):
    # q, v, out projections with bias, k without (4W^2 + 3W); MLP W->4W->W with biases
    # (8W^2 + 5W); two LayerNorms (4W): 12 W^2 + 12 W.
    width = base.model.image.width
    deeper = apply_overrides(base, [f"model.scan_layers={scan}", f"model.image.depth={base.model.image.depth + 1}"])
    shallow = apply_overrides(base, [f"model.scan_layers={scan}"])
    assert param_count(deeper, VOCAB) - param_count(shallow, VOCAB) == 12 * width**2 + 12 * width


def test_grid_is_the_full_product_with_readable_unique_names(base):
    sweep = grid(base, model_sizes=["XXS", {"name": "w16", "model.image.width": 16, "model.text.width": 16}],
                 data_patients=[50, 0], steps=[4, 8], vocab_size=VOCAB, base_spec=SMOKE)
    expected = {f"m-{m}__d-{d}__s-{s}" for m in ("XXS", "w16") for d in ("50", "all") for s in (4, 8)}
    assert {p.name for p in sweep.points} == expected and len(sweep.points) == 8
    for point in sweep.points:
        cfg = point.config
        assert (point.steps, point.data_size) == (cfg.total_steps, cfg.data.train_patients)
        assert point.flops_per_step == _model_flops(cfg, VOCAB)
        # The overrides alone rebuild the config from the base experiment.
        assert load_experiment(SMOKE, point.overrides) == cfg
    for model in ("XXS", "w16"):
        same_model = [p for p in sweep.points if p.name.startswith(f"m-{model}__")]
        assert {p.params for p in same_model} == {_initialised_params(same_model[0].config, VOCAB)}
    xxs = next(p for p in sweep.points if p.name == "m-XXS__d-50__s-8").config.model
    assert (xxs.image.width, xxs.image.depth, xxs.image.heads) == (64, 2, 2)
    assert (xxs.text.width, xxs.text.depth, xxs.text.heads) == (64, 2, 2)


def test_unnamed_model_sizes_are_named_by_their_parameters(base):
    sweep = grid(base, model_sizes=[{"model.image.depth": 1}], data_patients=[0], steps=[4], vocab_size=VOCAB)
    (point,) = sweep.points
    assert point.name == f"m-{point.params / 1e3:.3g}k__d-all__s-4"


def test_isoflop_steps_spend_each_budget_within_a_step(base):
    sizes = ["XXS", {"name": "w16", "model.image.width": 16, "model.text.width": 16}]
    per_step = {name: _model_flops(apply_overrides(base, ov), VOCAB)
                for name, ov in [("XXS", ["model.image.width=64", "model.image.depth=2", "model.image.heads=2",
                                          "model.text.width=64", "model.text.depth=2", "model.text.heads=2"]),
                                 ("w16", ["model.image.width=16", "model.text.width=16"])]}
    budgets = [50 * per_step["XXS"], 3e12]
    sweep = isoflop(base, budgets=budgets, model_sizes=sizes, vocab_size=VOCAB, min_steps=10)
    assert len(sweep.points) == 4
    for i, point in enumerate(sweep.points):  # budget-major order
        budget = budgets[i // 2]
        assert abs(point.steps * point.flops_per_step - budget) <= point.flops_per_step / 2
    assert {p.name for p in sweep.points if p.name.startswith("f-3e12")} == {"f-3e12__m-XXS", "f-3e12__m-w16"}
    # The smallest budget gives XXS exactly 50 steps; with min_steps=60 it is left out.
    assert next(p for p in sweep.points if p.name.endswith("m-XXS")).steps == 50
    fewer = isoflop(base, budgets=budgets[:1], model_sizes=sizes, vocab_size=VOCAB, min_steps=60)
    assert [p.name.split("__")[1] for p in fewer.points] == ["m-w16"]
    with pytest.raises(ConfigError, match="min_steps"):
        isoflop(base, budgets=[1.0], model_sizes=sizes, vocab_size=VOCAB)


def test_bad_sweep_specs_are_config_errors(base):
    with pytest.raises(ConfigError, match="unknown model size 'XXL'.*XXS"):
        grid(base, model_sizes=["XXL"], data_patients=[0], steps=[4], vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="several points named"):
        grid(base, model_sizes=["XXS", "XXS"], data_patients=[0], steps=[4], vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="unknown config key 'model.image.widht'"):
        grid(base, model_sizes=[{"model.image.widht": 8}], data_patients=[0], steps=[4], vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="not divisible"):
        grid(base, model_sizes=[{"model.image.width": 33}], data_patients=[0], steps=[4], vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="steps is empty"):
        grid(base, model_sizes=["XXS"], data_patients=[0], steps=[], vocab_size=VOCAB)


def test_load_sweep_errors_mirror_load_experiment(tmp_path):
    with pytest.raises(ConfigError, match="sweep file .* not found"):
        load_sweep(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_sweep"):
        load_sweep(str(empty))
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def get_sweep(arg=''):\n    return [1]\n")
    with pytest.raises(ConfigError, match="must return a Sweep, got list"):
        load_sweep(str(wrong))
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        load_sweep("experiments/scaling/synthetic_cxr_demo.py:nope")


def test_demo_specs_load():
    demo = load_sweep("experiments/scaling/synthetic_cxr_demo.py")
    assert len(demo.points) == 12 and len({p.params for p in demo.points}) == 4
    assert all(p.config.eval_every == p.steps and p.config.batch_size == 64 for p in demo.points)
    iso = load_sweep("experiments/scaling/synthetic_cxr_isoflop.py")
    budgets = {p.name.split("__")[0] for p in iso.points}
    assert len(iso.points) == 9 and len(budgets) == 3


def test_exponents_spec_spans_the_ranges_it_promises():
    """5 model sizes over >= 1.5 decades of parameters x 5 nested subsets over >= 1.2 decades of
    patients; every point trains the same number of epochs of its subset (steps proportional to
    patients), warms up for a tenth of its steps and is evaluated once, at its end, on the whole
    test split."""
    sweep = load_sweep("experiments/scaling/synthetic_cxr_exponents.py")
    params = sorted({p.params for p in sweep.points})
    patients = sorted({p.data_size or 10_547 for p in sweep.points})
    assert len(sweep.points) == 25 and len(params) == 5 and len(patients) == 5
    assert np.log10(params[-1] / params[0]) >= 1.5 and np.log10(patients[-1] / patients[0]) >= 1.2
    steps_per_patient = [p.steps / (p.data_size or 10_547) for p in sweep.points]
    assert max(steps_per_patient) / min(steps_per_patient) < 1.01
    for p in sweep.points:
        assert p.config.eval_every == p.steps == p.config.checkpoint_every
        assert p.config.optim.warmup_steps == p.steps // 10 and p.config.eval.max_examples == 0


def _tpu_vm_parser():
    spec = importlib.util.spec_from_file_location("tpu_vm", Path("tpu/tpu_vm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._parser()


def test_emitted_tpu_commands_parse_back_to_each_points_overrides(base):
    sweep = load_sweep("experiments/scaling/synthetic_cxr_demo.py:smoke")
    lines = emit_tpu_commands(sweep, "/mnt/shared/sweep/", tpu_name="radfm-v4", project="p", zone="us-central2-b",
                              accelerator_type="v4-32")
    assert len(lines) == len(sweep.points)
    for line, point in zip(lines, sweep.points):
        argv = shlex.split(line)
        assert argv[:2] == ["python", "tpu/tpu_vm.py"]
        args = _tpu_vm_parser().parse_args(argv[2:])
        assert (args.name, args.project, args.zone, args.accelerator_type, args.action) == (
            "radfm-v4", "p", "us-central2-b", "v4-32", "run")
        train = args.command[1:] if args.command[:1] == ["--"] else args.command  # as tpu_vm.run reads it
        assert train[:4] == ["radfm", "train", "--config", "experiments/synthetic_cxr/clip.py:smoke"]
        assert train[4:6] == ["--workdir", f"/mnt/shared/sweep/{point.name}"]
        sets = train[6:]
        assert sets[0::2] == ["--set"] * len(point.overrides) and tuple(sets[1::2]) == point.overrides
        assert load_experiment(train[3], sets[1::2]) == point.config


def test_emitting_needs_a_base_experiment_that_rebuilds_each_point(base):
    point = grid(base, model_sizes=["XXS"], data_patients=[0], steps=[4], vocab_size=VOCAB).points[0]
    with pytest.raises(ConfigError, match="no base_spec"):
        emit_tpu_commands(Sweep("s", (point,)), "/r", tpu_name="t", project="p", zone="z")
    # Claims the smoke base but its overrides miss what made the point (the XXS towers).
    wrong = Sweep("s", (point.__class__(**{**point.__dict__, "overrides": ("total_steps=4",)}),), SMOKE)
    with pytest.raises(ConfigError, match="does not give its config"):
        emit_tpu_commands(wrong, "/r", tpu_name="t", project="p", zone="z")


def test_cli_sweep_errors_are_one_line(tmp_path, capsys):
    assert main(["sweep", "status", str(tmp_path / "none.py"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("radfm sweep: error: sweep file") and "\n" not in err
    assert main(["sweep", "run", "experiments/scaling/synthetic_cxr_demo.py:smoke", "--root", str(tmp_path),
                 "--emit", "tpu"]) == 2
    assert "--tpu-name, --project and --zone" in capsys.readouterr().err


def test_cli_emits_one_line_per_point(tmp_path, capsys):
    assert main(["sweep", "run", "experiments/scaling/synthetic_cxr_demo.py:smoke", "--root", "/mnt/r", "--emit",
                 "tpu", "--tpu-name", "t", "--project", "p", "--zone", "z"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(" run -- radfm train " in line for line in lines)


# --- nested patient-level training subsets ----------------------------------------------------

def _patients(source):
    return [source[i]["patient_id"] for i in range(len(source))]


@pytest.fixture(scope="module")
def full_train(base, data_dir):
    return _patients(open_prepared(base.data).sources["train"])


def _subset(base, n, seed=0):
    data = apply_overrides(base, [f"data.train_patients={n}", f"data.subset_seed={seed}"]).data
    return open_prepared(data).sources["train"]


def test_subsets_are_whole_patients_nested_and_deterministic(base, full_train):
    small, large = _patients(_subset(base, 50)), _patients(_subset(base, 100))
    assert len(set(small)) == 50 and len(set(large)) == 100
    assert set(small) <= set(large) <= set(full_train)
    # Every study of a chosen patient, and nothing else, in the source's order.
    for subset in (small, large):
        chosen = set(subset)
        assert subset == [pid for pid in full_train if pid in chosen]
    assert _patients(_subset(base, 50)) == small
    assert set(_patients(_subset(base, 50, seed=1))) != set(small)


def test_more_patients_than_the_split_has_is_a_config_error(base, full_train):
    available = len(set(full_train))
    with pytest.raises(ConfigError, match=f"training split has {available} patients"):
        _subset(base, available + 1)
    assert len(set(_patients(_subset(base, available)))) == available


def test_training_on_a_subset(base, data_dir, tmp_path):
    from radfm_jax.train import loop

    config = load_experiment(SMOKE, ["data.train_patients=20", "total_steps=2", "log_every=1", "eval_every=0"])
    loop.train(config, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all(np.isfinite(line["loss"]) for line in lines)
