import dataclasses
import json
import runpy
import sys
from pathlib import Path

import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import apply_overrides, from_dict, to_dict, with_fields
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError

CLIP = "experiments/synthetic_cxr/clip.py"


def test_overrides_parse_each_field_type():
    config = apply_overrides(
        ExperimentConfig(),
        [
            "total_steps=7",
            "optim.learning_rate=3e-4",
            "data.augment=false",
            "mesh.rules=dp",
            "model.image.width=64",
            "eval.recall_ks=1,3",
            "name=x=y",
        ],
    )
    assert config.total_steps == 7
    assert config.optim.learning_rate == pytest.approx(3e-4)
    assert config.data.augment is False
    assert config.mesh.rules == "dp"
    assert config.model.image.width == 64
    assert config.eval.recall_ks == (1, 3)
    assert config.name == "x=y"  # only the first '=' separates key and value
    # Everything else keeps its default.
    assert config.model.text == ExperimentConfig().model.text


@pytest.mark.parametrize(
    "override, nearest",
    [("totl_steps=3", "total_steps"), ("optim.learning_rte=1", "optim.learning_rate"), ("mesh.fdsp=2", "mesh.fsdp")],
)
def test_misspelt_key_names_nearest_valid_key(override, nearest):
    with pytest.raises(ConfigError, match=f"unknown config key '{override.split('=')[0]}'; did you mean '{nearest}'"):
        apply_overrides(ExperimentConfig(), [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("total_steps=ten", "expects int"),
        ("mesh.rules=zero", "must be one of"),
        ("data.augment=maybe", "expects bool"),
        ("model=3", "is a group"),
        ("total_steps", "key=value"),
    ],
)
def test_bad_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), [override])


def test_experiment_file_variants_and_validation():
    demo = load_experiment(CLIP)
    smoke = load_experiment(CLIP + ":smoke")
    assert demo.objective.name == smoke.objective.name == "clip"
    assert smoke.total_steps < demo.total_steps and smoke.batch_size < demo.batch_size
    assert load_experiment("experiments/synthetic_cxr/siglip.py").objective.name == "siglip"
    with pytest.raises(ConfigError, match="not divisible"):
        load_experiment(CLIP + ":smoke", ["model.image.patch_size=5"])
    with pytest.raises(ConfigError, match="not found"):
        load_experiment("experiments/nope.py")
    with pytest.raises(ValueError, match="unknown variant"):
        load_experiment(CLIP + ":huge")


def test_config_round_trips_through_json():
    config = load_experiment(CLIP + ":smoke", ["eval.recall_ks=1,2"])
    restored = from_dict(ExperimentConfig, json.loads(json.dumps(to_dict(config))))
    assert restored == config
    assert dataclasses.is_dataclass(restored.model.image)


EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
EXPERIMENT_FILES = sorted(path for path in EXPERIMENTS.rglob("*.py"))


def test_there_are_experiment_files():
    assert len(EXPERIMENT_FILES) >= 10


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_file_reads_alone_from_any_working_directory(path, tmp_path, monkeypatch):
    # No sys.path changes, no imports from sibling files: runpy from an unrelated folder works,
    # and leaves sys.path and the module table free of experiment files.
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    namespace = runpy.run_path(str(path))
    function = next(namespace[name] for name in ("get_config", "get_sweep", "get_label_efficiency")
                    if name in namespace)
    result = function("")
    assert sys.path == path_before
    assert not [name for name, module in sys.modules.items()
                if str(EXPERIMENTS) in str(getattr(module, "__file__", "") or "")]
    assert isinstance(result, ExperimentConfig) or hasattr(result, "points") or hasattr(result, "modes")


CONFIG_FILES = [path for path in EXPERIMENT_FILES if "get_config" in path.read_text()]


@pytest.mark.parametrize("variant", ["", "smoke"])
@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_config_round_trips_through_config_json(path, variant):
    config = load_experiment(f"{path}:{variant}" if variant else str(path))
    text = json.dumps(to_dict(config))
    restored = from_dict(ExperimentConfig, json.loads(text))
    assert restored == config
    assert type(restored.objective) is type(config.objective)  # the plug-in class, by its name
    assert type(restored.model.image) is type(config.model.image)


def test_choosing_another_objective_by_name_gives_its_config_with_its_defaults():
    config = apply_overrides(ExperimentConfig(), ["objective.name=mae", "objective.mask_ratio=0.9"])
    assert type(config.objective).__name__ == "MaeConfig"
    assert config.objective.mask_ratio == 0.9 and config.objective.norm_pix_loss is True
    assert apply_overrides(config, ["objective.name=mae"]).objective.mask_ratio == 0.9  # same name: kept


@pytest.mark.parametrize("override, needles", [
    ("objective.mask_ratio=0.9", ["'objective.mask_ratio'", "objective 'mae'", "'clip'", "objective.name=mae"]),
    ("objective.chunked=true", ["objective 'siglip'", "objective.name=siglip"]),
    ("objective.name=sigmoid", ["'objective.name'", "clip", "siglip", "coca", "did you mean 'siglip'"]),
    ("model.image.name=vitt", ["'model.image.name'", "image tower", "vit", "did you mean 'vit'"]),
    ("model.text.name=t5", ["text tower", "transformer"]),
    # a field of no objective: the nearest valid key
    ("objective.mask_ratoi=0.5", ["unknown config key 'objective.mask_ratoi'; did you mean 'objective.name'"]),
])
def test_objective_and_tower_choices_are_checked(override, needles):
    with pytest.raises(ConfigError) as error:
        apply_overrides(ExperimentConfig(), [override])
    for needle in needles:
        assert needle in str(error.value), str(error.value)


def test_with_fields_states_changes_in_python_values():
    from radfm_jax.objectives.mae import MaeConfig

    config = with_fields(ExperimentConfig(), {"objective": MaeConfig(mask_ratio=0.6), "model.image.depth": 2})
    assert config.objective == MaeConfig(mask_ratio=0.6) and config.model.image.depth == 2
    with pytest.raises(ConfigError, match="did you mean 'model.image.depth'"):
        with_fields(config, {"model.image.dpeth": 2})
    with pytest.raises(ConfigError, match="'model.image.depth' expects int"):
        with_fields(config, {"model.image.depth": 2.5})
    with pytest.raises(ConfigError, match="'objective' expects ObjectiveConfig"):
        with_fields(config, {"objective": "mae"})


def test_a_config_json_naming_an_unknown_objective_is_a_config_error():
    data = to_dict(ExperimentConfig())
    data["objective"]["name"] = "jepa"
    with pytest.raises(ConfigError, match="'objective.name' is 'jepa', not a registered objective"):
        from_dict(ExperimentConfig, data)
