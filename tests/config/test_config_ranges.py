"""Every numeric config field declares its allowed range where it is declared, and one walker
(config/ranges.py check_ranges, run by loading.validate) refuses NaN / inf and values outside it
with a message naming the dotted field, the value and the range."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from radfm_jax import cli
from radfm_jax.config import presets
from radfm_jax.config.loading import load_experiment, validate
from radfm_jax.config.overrides import apply_overrides, with_fields
from radfm_jax.config.ranges import Range, check_ranges, declared_ranges
from radfm_jax.config.schema import Choice, ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.objectives import OBJECTIVES

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
SMOKE = str(EXPERIMENTS / "synthetic_cxr" / "clip.py") + ":smoke"
DECLARED = declared_ranges(ExperimentConfig)
# "model.image(vit).width": a field of the `vit` choice of the plug-in field model.image.
_CHOICE_KEY = re.compile(r"^(?P<slot>[\w.]+)\((?P<name>\w+)\)\.(?P<rest>[\w.]+)$")


def test_every_numeric_field_declares_a_range():
    missing = [key for key, allowed in DECLARED.items() if allowed is None]
    assert not missing, f"numeric config fields without a declared range (config/ranges.py): {missing}"


def test_the_walk_covers_every_registered_objective_and_tower():
    # Each plug-in slot is expanded into every choice its mapping registers, so a new objective
    # or tower with an unranged numeric field fails the test above.
    for name, objective in OBJECTIVES.items():
        fields = [f for f in dataclasses.fields(objective.Config) if f.type in ("int", "float")]
        assert all(f"objective({name}).{f.name}" in DECLARED for f in fields)
    model = ExperimentConfig().model
    for slot in ("image", "text", "decoder", "mae_decoder"):
        for name in type(getattr(model, slot)).choices():
            assert any(key.startswith(f"model.{slot}({name}).") for key in DECLARED), (slot, name)
    for key in ("optim.learning_rate", "optim.warmup_steps", "data.vocab_size", "eval.generate.top_p",
                "eval.recall_ks", "mesh.data", "objective(mae).mask_ratio", "model.image(vit).width"):
        assert key in DECLARED


def _chosen(key: str) -> tuple[ExperimentConfig, str]:
    """The default config with the choice a declared `key` belongs to (model.image(vit).width:
    model.image's `vit`), and the field's dotted key in such a config."""
    match = _CHOICE_KEY.match(key)
    if not match:
        return ExperimentConfig(), key
    return apply_overrides(ExperimentConfig(), [f"{match['slot']}.name={match['name']}"]), f"{match['slot']}.{match['rest']}"


def _replace(node, names, value):
    head, *rest = names
    return dataclasses.replace(node, **{head: _replace(getattr(node, head), rest, value) if rest else value})


def _owner(config, path: str):
    for name in path.split(".")[:-1]:
        config = getattr(config, name)
    return config


def _outside(allowed: Range, integer: bool) -> list:
    """Values just outside `allowed`."""
    values = []
    if allowed.low != -math.inf:
        below = (math.floor(allowed.low) if allowed.low_open else math.ceil(allowed.low) - 1) if integer \
            else (allowed.low if allowed.low_open else allowed.low - 0.5)
        values.append(below)
    if allowed.high != math.inf:
        above = (math.ceil(allowed.high) if allowed.high_open else math.floor(allowed.high) + 1) if integer \
            else (allowed.high if allowed.high_open else allowed.high + 0.5)
        values.append(above)
    return [v for v in values if v not in allowed.also]


@pytest.mark.parametrize("key", sorted(DECLARED))
def test_each_declared_field_default_is_inside_and_its_edges_outside_are_refused(key):
    allowed = DECLARED[key]
    config, path = _chosen(key)
    default = getattr(type(_owner(config, path))(), path.split(".")[-1])  # the field's own default
    items = default if isinstance(default, tuple) else (default,)
    assert all(item in allowed for item in items), (key, default, allowed)
    integer = all(isinstance(item, int) for item in items)
    wrap = (lambda v: (v,)) if isinstance(default, tuple) else (lambda v: v)
    bad_values = _outside(allowed, integer) + ([] if integer else [math.nan, math.inf, -math.inf])
    for bad in bad_values:
        with pytest.raises(ConfigError) as err:
            check_ranges(_replace(config, path.split("."), wrap(bad)))
        message = str(err.value)
        assert f"'{path}'" in message and repr(bad) in message and str(allowed) in message, message


@pytest.mark.parametrize(
    "override, needles",
    [
        ("optim.learning_rate=nan", ["'optim.learning_rate'", "finite", "positive", "nan"]),
        ("optim.learning_rate=inf", ["'optim.learning_rate'", "finite", "inf"]),
        ("optim.learning_rate=-inf", ["'optim.learning_rate'", "-inf"]),
        ("optim.learning_rate=0", ["'optim.learning_rate'", "positive", "got 0.0"]),
        ("optim.learning_rate=-1e-3", ["'optim.learning_rate'", "positive", "-0.001"]),
        ("optim.warmup_steps=-1", ["'optim.warmup_steps'", ">= 0", "got -1"]),
        ("data.vocab_size=0", ["'data.vocab_size'", "positive", "got 0"]),
        ("data.vocab_size=-5", ["'data.vocab_size'", "positive", "got -5"]),
        ("total_steps=0", ["'total_steps'", "positive"]),
        ("eval_every=-1", ["'eval_every'", ">= 0 (0 = no evaluation)", "got -1"]),
        ("optim.b2=1.0", ["'optim.b2'", "in [0, 1)", "got 1.0"]),
        ("optim.min_lr_ratio=nan", ["'optim.min_lr_ratio'", "nan"]),
        ("model.init_bias=-inf", ["'model.init_bias'", "finite", "-inf"]),
        ("data.train_fraction=0", ["'data.train_fraction'", "in (0, 1]"]),
        ("eval.generate.top_p=1.5", ["'eval.generate.top_p'", "in (0, 1]", "1.5"]),
        ("eval.recall_ks=1,0", ["'eval.recall_ks'", "positive", "0 in (1, 0)"]),
        ("mesh.data=0", ["'mesh.data'", "-1 or positive", "got 0"]),
        ("mesh.fsdp=-2", ["'mesh.fsdp'", "-1 or positive", "got -2"]),
        ("model.image.width=0", ["'model.image.width'", "positive"]),
        ("model.decoder.unimodal_depth=-1", ["'model.decoder.unimodal_depth'", ">= 0"]),
    ],
)
def test_out_of_range_values_are_refused_at_load_time(override, needles):
    with pytest.raises(ConfigError) as err:
        load_experiment(SMOKE, [override])
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize("overrides", [
    ["objective.name=mae", "objective.mask_ratio=1.0"],
    ["objective.name=caption", "objective.label_smoothing=nan"],
    ["objective.name=classify", "objective.layer_decay=0"],
    ["objective.name=coca", "model.decoder.unimodal_depth=1", "objective.caption_weight=-1"],
])
def test_objective_fields_are_checked_too(overrides):
    key = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(f"'{key}' must be")):
        load_experiment(SMOKE, overrides)


@pytest.mark.parametrize("overrides", [
    ["eval_every=0", "data.train_patients=0", "eval.max_examples=0", "eval.bootstrap=0", "init.step=0",
     "data.worker_count=0", "data.prefetch_batches=0", "optim.warmup_steps=0", "optim.weight_decay=0",
     "optim.min_lr_ratio=0", "eval.generate.max_examples=0", "eval.probe_train_examples=0"],
    ["mesh.data=-1", "mesh.fsdp=1", "mesh.tensor=1"],
    ["mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1"],
    ["model.init_bias=-10", "eval.generate.length_penalty=-0.5"],
])
def test_off_and_auto_values_stay_allowed(overrides):
    load_experiment(SMOKE, overrides)


def test_at_most_one_mesh_axis_takes_the_rest():
    with pytest.raises(ConfigError, match="at most one -1"):
        load_experiment(SMOKE, ["mesh.data=-1", "mesh.fsdp=-1"])


def _experiment_specs() -> list[str]:
    specs = []
    for path in sorted(EXPERIMENTS.rglob("*.py")):
        if "def get_config" not in path.read_text():
            continue
        variants = ["", "smoke"]
        if path.name == "finetune.py":
            variants += [f"{mode}{smoke}" for mode in ("linear", "lora", "partial", "full")
                         for smoke in ("", "-smoke")]
        specs += [f"{path}:{variant}" if variant else str(path) for variant in variants]
    return specs


def test_defaults_and_presets_validate():
    validate(ExperimentConfig())
    validate(presets.synthetic_cxr_cpu())
    from radfm_jax.data.builders.registry import BUILDERS

    for name in BUILDERS:
        check_ranges(presets.real_cxr(name))
        check_ranges(dataclasses.replace(ExperimentConfig(), data=presets.recipe_data(name)))
    for size in presets.VIT_SIZES:
        check_ranges(with_fields(ExperimentConfig(), {"model.image": presets.vit(size),
                                                      "model.text": presets.text(size)}))


@pytest.mark.parametrize("spec", _experiment_specs(), ids=lambda s: str(Path(s.split(":")[0]).relative_to(EXPERIMENTS))
                         + (":" + s.split(":")[1] if ":" in s else ""))
def test_every_experiment_variant_validates(spec):
    load_experiment(spec)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_with_its_defaults_validates(name):
    needs = {"coca": ["model.decoder.unimodal_depth=1"], "dino": ["model.image.pool=cls"]}  # what each checks
    overrides = [f"objective.name={name}", *needs.get(name, [])]
    config = load_experiment(SMOKE, overrides)
    assert isinstance(config.objective, Choice) and config.objective.name == name


def test_cli_refuses_a_nan_learning_rate_in_one_line(tmp_path, capsys):
    code = cli.main(["train", "--config", SMOKE, "--workdir", str(tmp_path / "run"),
                     "--set", "optim.learning_rate=nan"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("radfm train: error: ") and "\n" not in err and "'optim.learning_rate'" in err
    assert not (tmp_path / "run").exists()
