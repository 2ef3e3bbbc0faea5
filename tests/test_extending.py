"""README "Extending radfm_jax", done for real: an objective, an image tower and a data set
defined here, plugged in through the public mappings (one line each), trained by the ordinary
trainer for two steps on 8 fake devices.

The objective has the shape self-distillation (DINO) needs without touching the trainer: a
second view of each image made by a data transform of its own, and an EMA teacher kept in the
train state's extra part, updated after every optimizer step and checkpointed with it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from radfm_jax import objectives
from radfm_jax.config.loading import load_experiment
from radfm_jax.config.overrides import from_dict, to_dict, with_fields
from radfm_jax.config.schema import ExperimentConfig, ImageTowerConfig, ObjectiveConfig
from radfm_jax.data.builders import registry
from radfm_jax.data.builders.common import ManualBuilder, ManualBuilderConfig, planned_radiograph
from radfm_jax.data.builders.manual_folder import read_csv_rows, require_files
from radfm_jax.data.builders.patient_splits import seeded_split
from radfm_jax.data.datasets import open_prepared
from radfm_jax.data.findings import CHEXPERT_FINDINGS
from radfm_jax.data.labeler import label_vector
from radfm_jax.errors import ConfigError
from radfm_jax.models import towers
from radfm_jax.models.costs import TowerCosts
from radfm_jax.models.layers import dense, layer_norm
from radfm_jax.models.towers import build_image_tower
from radfm_jax.models.vit import patchify
from radfm_jax.objectives.base import (
    BatchField,
    Objective,
    image_channels,
    image_shape,
    stacks_activation_bytes,
    step_flops,
    with_params,
)
from radfm_jax.train import checkpoint, loop
from radfm_jax.train.experiment import Experiment

# --- a toy objective: predict the EMA teacher's embedding of a flipped view ------------------


@dataclasses.dataclass(frozen=True)
class TwoViewConfig(ObjectiveConfig):
    name: Literal["two_view"] = dataclasses.field(default="two_view", init=False)
    momentum: float = 0.9  # teacher <- momentum * teacher + (1 - momentum) * student


class FlippedView(grain.transforms.RandomMap):
    """The second view: the image mirrored left-right, with a little noise."""

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        image = element["image"][:, ::-1]
        return {**element, "view": (image + 0.05 * rng.standard_normal(image.shape)).astype(np.float32)}


class TwoView(Objective):
    Config = TwoViewConfig

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return build_image_tower(self.config.model, image_shape(self.config), rngs)

    def batch_spec(self) -> dict[str, BatchField]:
        image = super().batch_spec()["image"]
        return {"image": image, "view": image}

    def data_transforms(self) -> tuple:
        return (FlippedView(),)

    def init_extra(self, params):
        return {"teacher": params}

    def update_extra(self, extra, params, step, signals):
        m = self.cfg.momentum
        return {"teacher": jax.tree.map(lambda t, s: m * t + (1 - m) * s, extra["teacher"], params)}

    def forward(self, model, batch, extra):
        teacher = jax.lax.stop_gradient(with_params(model, extra["teacher"])(batch["view"]))
        return {"student": model(batch["image"]), "teacher": teacher}

    def loss(self, outputs):
        unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
        cosine = jnp.sum(unit(outputs["student"]) * unit(outputs["teacher"]), axis=-1)
        return jnp.mean(2 - 2 * cosine), {"cosine": jnp.mean(cosine)}

    def flops(self):
        image = self.config.model.image
        costs = towers.IMAGE_TOWERS[image.name].costs(image, image_shape(self.config), image_channels(self.config))
        student = step_flops(self.config.batch_size, input_flops=costs.input_flops,
                             differentiable=costs.blocks_flops + costs.head_flops)
        return dataclasses.replace(student, forward=2 * student.forward, model=student.model + student.forward)

    def activation_bytes_per_example(self):
        image = self.config.model.image
        costs = towers.IMAGE_TOWERS[image.name].costs(image, image_shape(self.config), image_channels(self.config))
        return stacks_activation_bytes(costs.stacks, self.config)


# --- a toy image tower: a patch embedding and one residual MLP, mean-pooled ------------------


@dataclasses.dataclass(frozen=True)
class PatchMlpConfig(ImageTowerConfig):
    name: Literal["patch_mlp"] = dataclasses.field(default="patch_mlp", init=False)
    patch_size: int = 8
    width: int = 32


class PatchMlp(nnx.Module):
    Config = PatchMlpConfig

    def __init__(self, cfg, image_shape, *, channels=1, dtype=jnp.float32, scan_layers=True, remat="none", rngs):
        self.check(cfg, image_shape)
        self.patch_size, self.width, self.pool = cfg.patch_size, cfg.width, "mean"
        self.num_patches = self.num_patches_of(cfg, image_shape)
        self.patch_dim = self.patch_dim_of(cfg, image_shape, channels)
        self.patch_embed = dense(self.patch_dim, cfg.width, ("patch", "embed"), dtype=dtype, rngs=rngs)
        self.hidden = dense(cfg.width, 4 * cfg.width, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.out = dense(4 * cfg.width, cfg.width, ("mlp", "embed"), dtype=dtype, rngs=rngs)
        self.norm = layer_norm(cfg.width, rngs)

    @staticmethod
    def check(cfg, image_shape, key="model.image"):
        if any(size % cfg.patch_size for size in image_shape):
            raise ConfigError(f"{key}.patch_size={cfg.patch_size} does not divide {image_shape}")

    @staticmethod
    def num_patches_of(cfg, image_shape):
        return int(np.prod([size // cfg.patch_size for size in image_shape]))

    num_tokens = num_patches_of

    @staticmethod
    def patch_dim_of(cfg, image_shape, channels=1):
        return cfg.patch_size ** len(image_shape) * channels

    @classmethod
    def costs(cls, cfg, image_shape, channels=1, patches=None):
        n = cls.num_patches_of(cfg, image_shape) if patches is None else patches
        return TowerCosts(width=cfg.width, input_flops=2.0 * n * cls.patch_dim_of(cfg, image_shape, channels) * cfg.width,
                          stacks=(), head_flops=2.0 * 2 * n * cfg.width * 4 * cfg.width)

    @classmethod
    def param_count(cls, cfg, image_shape, channels=1):
        w = cfg.width
        return (cls.patch_dim_of(cfg, image_shape, channels) + 1) * w + (w + 1) * 4 * w + (4 * w + 1) * w + 2 * w

    def embed_patches(self, images):
        return self.patch_embed(patchify(images, self.patch_size)).astype(jnp.float32)

    def encode(self, tokens):
        return self.norm(tokens + self.out(nnx.gelu(self.hidden(tokens))))

    def tokens(self, images):
        return self.encode(self.embed_patches(images))

    def pool_states(self, states):
        return states.mean(axis=1)

    def __call__(self, images):
        return self.pool_states(self.tokens(images))


# --- a toy data set: PNG radiographs and one table of reports -------------------------------


class MyCxr(ManualBuilder):
    """Chest radiographs with reports, labelled by the report labeler; a seeded patient split."""

    name = "my_cxr"
    BUILDER_CONFIGS = [ManualBuilderConfig()]
    LABEL_NAMES = CHEXPERT_FINDINGS
    LAYOUT = "  <manual_dir>/reports.csv    path, patient, study, report\n  <manual_dir>/images/*.png"

    def _plan(self, manual_dir, ids, skips):
        table = require_files(manual_dir, self.name, {"report table": ["reports.csv"]}, self.LAYOUT)["report table"]
        fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
        return [planned_radiograph(
                    key=row["path"], split=seeded_split(f"my_cxr/{row['patient']}", self.builder_config.split_seed,
                                                        fractions),
                    patient=ids("my_cxr-patient", row["patient"]), study=ids("my_cxr-study", row["study"]),
                    image_path=manual_dir / row["path"], source_path=row["path"], report=row["report"],
                    labels=label_vector(row["report"]))
                for row in read_csv_rows(table, self.name, ["path", "patient", "study", "report"])]


REPORTS = ["Small left pleural effusion.", "No acute cardiopulmonary abnormality.",
           "The heart is enlarged. No pneumothorax.", "Right upper lobe nodule. No effusion.",
           "Endotracheal tube in place. Lungs are clear."]


def _write_copy(root):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = ["path,patient,study,report"]
    rng = np.random.default_rng(0)
    for i in range(40):
        path = f"images/{i}.png"
        Image.fromarray(rng.integers(0, 256, (48, 40), np.uint8)).save(root / path)
        rows.append(f"{path},p{i // 2},s{i},{REPORTS[i % len(REPORTS)]}")
    (root / "reports.csv").write_text("\n".join(rows) + "\n")
    return root


# --- plugged in through the public mappings: one line each -----------------------------------


@pytest.fixture
def plugged_in(monkeypatch):
    monkeypatch.setitem(objectives.OBJECTIVES, "two_view", TwoView)
    monkeypatch.setitem(towers.IMAGE_TOWERS, "patch_mlp", PatchMlp)
    monkeypatch.setitem(registry.BUILDERS, "my_cxr", MyCxr)


def _config(**changes) -> ExperimentConfig:
    base = load_experiment("experiments/synthetic_cxr/clip.py:smoke")
    return with_fields(base, {"name": "two_view_toy", "total_steps": 2, "log_every": 1, "eval_every": 0,
                              "checkpoint_every": 2, "mesh.data": 2, "mesh.fsdp": 4, "batch_size": 16,
                              "optim.warmup_steps": 1, **changes})


def test_a_new_objective_trains_two_steps_on_8_devices_with_a_teacher_and_a_second_view(plugged_in, tmp_path):
    config = _config(objective=TwoViewConfig(momentum=0.5))
    workdir = tmp_path / "run"
    loop.train(config, workdir)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(np.isfinite(line["loss"]) and -1 <= line["cosine"] <= 1 for line in lines)
    assert lines[0]["model_flops_per_step"] == TwoView(config, 256).flops().model

    # The teacher is checkpointed with the parameters, sharded like them, and is the EMA of the
    # student: after 2 updates t2 = m^2 t0 + m(1 - m) s1 + (1 - m) s2 with t0 = s0.
    exp = Experiment.plan(config, vocab_size=256)
    manager = checkpoint.make_manager(workdir, keep=1)
    try:
        state, _ = checkpoint.restore(manager, 2, exp.layout.abstract, exp.layout.shardings)
    finally:
        manager.close()
    kernel, teacher_kernel = state.params["patch_embed"]["kernel"], state.extra["teacher"]["patch_embed"]["kernel"]
    assert teacher_kernel.sharding == kernel.sharding and "fsdp" in str(kernel.sharding.spec)
    assert not np.allclose(teacher_kernel, kernel)  # the teacher lags the student
    initial = exp.init_state().params["patch_embed"]["kernel"]
    # The student moved from s0; the teacher moved less far, towards it.
    assert 0 < np.abs(teacher_kernel - initial).mean() < np.abs(kernel - initial).mean()


def test_a_new_image_tower_trains_clip_by_name(plugged_in, tmp_path):
    config = _config(**{"model.image": PatchMlpConfig(width=32)})
    assert load_experiment("experiments/synthetic_cxr/clip.py:smoke", ["model.image.name=patch_mlp"]).model.image \
        == PatchMlpConfig()
    loop.train(config, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and lines[1]["loss"] != lines[0]["loss"]
    exp = Experiment.plan(config, vocab_size=256)
    tower = exp.layout.abstract.params["image"]
    assert sum(x.size for x in jax.tree.leaves(tower)) == PatchMlp.param_count(config.model.image, (32, 32))


def test_a_new_data_set_is_built_from_the_users_copy_and_trained_on(plugged_in, tmp_path):
    manual = _write_copy(tmp_path / "copy")
    config = _config(**{"data.name": "my_cxr", "data.manual_dir": str(manual), "data.data_dir": str(tmp_path / "data")})
    data = open_prepared(config.data)
    assert data.label_names == CHEXPERT_FINDINGS
    assert sum(len(source) for source in data.sources.values()) == 40
    assert set(data.sources) == {"train", "val", "test"}
    loop.train(config, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all(np.isfinite(line["loss"]) for line in lines)


def test_an_objective_that_is_not_plugged_in_is_refused_by_name():
    assert "two_view" not in objectives.OBJECTIVES
    data = to_dict(ExperimentConfig())
    data["objective"] = {"name": "two_view", "momentum": 0.5}
    with pytest.raises(ConfigError, match="not a registered objective"):
        from_dict(ExperimentConfig, data)
