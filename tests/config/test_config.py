import dataclasses
import json

import pytest

from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import apply_overrides, from_dict, to_dict
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
