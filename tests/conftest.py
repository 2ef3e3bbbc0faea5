"""Test set-up: 8 fake CPU devices, set before JAX is imported anywhere."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

# Fixtures several test files share. They import radfm_jax inside, so nothing here imports
# JAX before the flags above are set.
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_pseudonym_key(tmp_path_factory):
    """Builds of real-data sets read (or create) the pseudonym key under $XDG_CONFIG_HOME unless
    RADFM_PSEUDONYM_KEY names one: the session gets a config folder of its own, outside every
    test's tmp_path (a key inside a data folder is refused), so no test reads or writes the real
    ~/.config/radfm_jax or a key the environment names. Session-scoped, so it is in place before
    module-scoped fixtures build data sets; tests that need another key monkeypatch these."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg_config")))
        patch.delenv("RADFM_PSEUDONYM_KEY", raising=False)
        yield


@pytest.fixture(scope="session")
def toy_experiment():
    """A factory of tiny planned experiments (no data): two one-block towers of width 32 with
    mean pooling on 16 x 16 images and 8-token reports from a 64-word vocabulary, unrolled
    layers, a 16-wide shared embedding, learning rate 1e-2 without warmup, 10 steps, seed 0.

        exp = toy_experiment(MeshConfig(data=2, fsdp=4), batch_size=32,
                             objective=SiglipConfig(), changes={"model.init_bias": -2.0})

    `mesh` and `objective` (default CLIP) replace the config's; `changes` are dotted fields set
    after the toy's own (config.overrides.with_fields). Returns Experiment.plan of the config."""
    from radfm_jax.config.overrides import with_fields
    from radfm_jax.config.schema import ExperimentConfig, MeshConfig, ObjectiveConfig
    from radfm_jax.models.text import TextTransformerConfig
    from radfm_jax.models.vit import ViTConfig
    from radfm_jax.objectives.clip import ClipConfig
    from radfm_jax.train.experiment import Experiment

    def make(mesh: MeshConfig, *, batch_size: int, objective: ObjectiveConfig | None = None,
             changes: dict | None = None) -> Experiment:
        toy = {
            "total_steps": 10, "batch_size": batch_size,
            "data.input_size": 16, "data.max_text_len": 8, "data.vocab_size": 64,
            "model.image": ViTConfig(patch_size=8, width=32, depth=1, heads=2, pool="mean"),
            "model.text": TextTransformerConfig(width=32, depth=1, heads=2, pool="mean"),
            "model.embed_dim": 16, "model.scan_layers": False,  # tiny and unrolled: fast to compile
            "optim.learning_rate": 1e-2, "optim.warmup_steps": 0,
            "mesh": mesh, "objective": objective or ClipConfig(),
        }
        return Experiment.plan(with_fields(ExperimentConfig(), {**toy, **(changes or {})}))

    return make


class _StopAtStep:
    """Stands in for SIGTERM in radfm_jax.train.loop: asks to save and stop after step k."""

    def __init__(self, k: int):
        self._k = k

    def reached(self, step: int) -> bool:
        return step == self._k

    def restore(self) -> None:
        pass


@pytest.fixture
def stop_at_step(monkeypatch):
    """`stop_at_step(k)`: from then on (until the test ends) loop.train saves and returns after
    step k, as if preempted there; a k it never reaches lets it run to the end."""
    from radfm_jax.train import loop

    def stop(k: int) -> None:
        monkeypatch.setattr(loop, "_Preemption", lambda start_step: _StopAtStep(k))

    return stop
