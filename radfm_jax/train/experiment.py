"""The one assembly point: an experiment config -> device mesh, prepared data, objective,
optimizer, train-state layout, and the jitted step with its shardings.

Training (train/loop.py), `radfm eval` / `radfm generate` (train/from_checkpoint.py),
`radfm compile` (tools/aot_compile.py), the benchmarks and the tests all build their step here,
so there is one way a config becomes a step:

    exp = Experiment.build(config)           # opens (or builds) the data set
    exp = Experiment.plan(config)            # no data: shapes from the config (AOT, benchmarks)
    state = exp.init_state()                 # born sharded on the mesh
    step = exp.train_step().jit()            # (state, batch) -> (state, metrics), state donated
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.data.datasets import PreparedData, open_prepared
from radfm_jax.data.device_put import to_global_batch
from radfm_jax.evals.evaluators import Evaluator, build_evaluators
from radfm_jax.evals.predictors import Predictors
from radfm_jax.objectives import make_objective
from radfm_jax.objectives.base import Objective, StepFlops
from radfm_jax.parallel import multihost
from radfm_jax.parallel.mesh import make_mesh
from radfm_jax.train.optimizer import learning_rate_schedule, make_optimizer
from radfm_jax.train.predict import build_predictors
from radfm_jax.train.state import StateLayout, TrainState, init_train_state, plan_state
from radfm_jax.train.step import StepFunction, batch_shardings, build_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything built from a config before the first step."""

    config: ExperimentConfig
    mesh: Mesh
    objective: Objective
    tx: optax.GradientTransformation
    layout: StateLayout
    data: PreparedData | None = None  # None when planned without data

    @classmethod
    def build(cls, config: ExperimentConfig, *, devices: Sequence[jax.Device] | None = None) -> Experiment:
        """With the prepared data set (built on first use) and its tokenizer's vocabulary."""
        with multihost.primary_first("radfm: data prepared"):  # processes may share a data folder
            data = open_prepared(config.data)
        return cls.plan(config, data.tokenizer.vocab_size, devices=devices, data=data)

    @classmethod
    def plan(cls, config: ExperimentConfig, vocab_size: int | None = None, *,
             devices: Sequence[jax.Device] | None = None, data: PreparedData | None = None) -> Experiment:
        """Without reading data. `vocab_size` defaults to data.vocab_size, the tokenizer's upper
        bound (a trained tokenizer can be smaller), so the embedding table is never
        underestimated; `devices` defaults to this process's (AOT: a TPU slice's)."""
        mesh = make_mesh(config.mesh, None if devices is None else list(devices))
        objective = make_objective(config, vocab_size or config.data.vocab_size, mesh,
                                   data.label_names if data is not None else ())
        if data is not None:
            objective.prepare(data)
        tx = make_optimizer(config.optim, config.total_steps, trainable=objective.trainable,
                            update_scale=objective.update_scale)
        layout = plan_state(objective.model_factory(), tx, mesh, config.mesh.rules, objective.init_extra)
        return cls(config, mesh, objective, tx, layout, data)

    @property
    def vocab_size(self) -> int:
        return self.objective.vocab_size

    @property
    def num_params(self) -> int:
        return sum(math.prod(x.shape) for x in jax.tree.leaves(self.layout.abstract.params))

    def init_state(self) -> TrainState:
        """A fresh train state; with config.init, its image tower is the pretrained one."""
        objective, init = self.objective, self.config.init
        if not (init.workdir or init.weights or init.text_weights):
            return init_train_state(self.layout, objective.model_factory(), self.tx, objective.init_extra)
        # Checkpoint reading only here: `radfm compile` plans steps without loading Orbax's stack.
        from radfm_jax.train.pretrained import fit_tower, graft_tower, load_pretrained_tower, published_start

        if init.workdir and init.weights:
            raise ConfigError("set init.workdir (a radfm_jax run) or init.weights (a published checkpoint), not both")
        grafts = published_start(self.config, objective.image_tower_path, set(self.layout.abstract.params))
        if init.workdir:
            tower, source, source_config = load_pretrained_tower(init)
            grafts.append((objective.image_tower_path, fit_tower(tower, source_config, self.config), source))
        for path, _, source in grafts:
            log.info("%s from %s", {(): "the whole model", ("text",): "text tower"}.get(path, "image tower"), source)

        def graft_all(params, towers):
            for (path, _, source), tower in zip(grafts, towers):
                params = graft_tower(params, path, tower, source)
            return params

        return init_train_state(self.layout, objective.model_factory(), self.tx, objective.init_extra,
                                replace_params=graft_all, replacement=[tower for _, tower, _ in grafts])

    def train_step(self) -> StepFunction:
        """The train step: what training runs and `radfm compile` compiles."""
        config = self.config
        return build_train_step(
            self.layout, self.tx, self.objective, learning_rate_schedule(config.optim, config.total_steps),
            self.mesh, grad_accum_steps=config.optim.grad_accum_steps, seed=config.seed,
        )

    def batch_shardings(self) -> dict[str, NamedSharding]:
        return batch_shardings(self.mesh, tuple(self.objective.batch_spec()))

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes, dtypes and shardings of one global train batch."""
        shardings = self.batch_shardings()
        return {key: jax.ShapeDtypeStruct((self.config.batch_size, *spec.shape), spec.dtype, sharding=shardings[key])
                for key, spec in self.objective.batch_spec().items()}

    def random_batch(self, seed: int = 0) -> dict[str, jax.Array]:
        """A global batch of random content on the mesh (benchmarks, tests)."""
        host = self.objective.random_batch(np.random.default_rng(seed), self.config.batch_size)
        return to_global_batch(host, self.batch_shardings())

    def flops(self) -> StepFlops:
        return self.objective.flops()

    def predictors(self) -> Predictors:
        return build_predictors(self.layout, self.mesh, self.config.eval.generate, self.config.data.max_text_len)

    def evaluators(self) -> list[Evaluator]:
        """The evaluators eval.evaluators names, else the objective's own."""
        if self.data is None:
            raise ValueError("evaluators read the data set: build the experiment with Experiment.build")
        names = self.config.eval.evaluators or self.objective.default_evaluators
        return build_evaluators(self.config, self.data, self.predictors(), self.mesh, names)
