"""An experiment (or sweep) file that does not run — a syntax error, a failed import, an
exception in get_config — is one ConfigError naming the file, its line and the error, and
`radfm train` prints it as one line with exit code 2, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from radfm_jax import cli
from radfm_jax.config.loading import call_spec_file, load_experiment
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError

CLIP = Path(__file__).resolve().parents[2] / "experiments" / "synthetic_cxr" / "clip.py"

FILES = {
    # name: (source, line of the error, the error's text)
    "syntax": ("""
        from radfm_jax.config.schema import ExperimentConfig


        def get_config(arg: str = ""):
            return ExperimentConfig(
        """, 5, "SyntaxError: '(' was never closed"),
    "indent": ("""
        def get_config(arg: str = ""):
        return 1
        """, 2, "IndentationError: expected an indented block"),
    "name_error": ("""
        from radfm_jax.config.schema import ExperimentConfig


        def get_config(arg: str = ""):
            config = ExperimentConfig()
            return foo
        """, 6, "NameError: name 'foo' is not defined"),
    "import_error": ("""
        from radfm_jax.config.schema import ExperimentConfg


        def get_config(arg: str = ""):
            return ExperimentConfg()
        """, 1, "ImportError: cannot import name 'ExperimentConfg'"),
    "top_level": ("""
        SIZES = {"S": 1}
        DEFAULT = SIZES["M"]
        """, 2, "KeyError: 'M'"),
    "raised_below": ("""
        from radfm_jax.config import presets
        from radfm_jax.config.overrides import with_fields
        from radfm_jax.config.schema import ExperimentConfig


        def get_config(arg: str = ""):
            return with_fields(ExperimentConfig(), {
                "model.image": presets.vit("XL"),
            })
        """, 8, "ValueError: unknown model size 'XL'"),
    "zero_division": ("""
        from radfm_jax.config.schema import ExperimentConfig


        def get_config(arg: str = ""):
            steps = 1000 // int(arg or 0)
            return ExperimentConfig(total_steps=steps)
        """, 5, "ZeroDivisionError: integer division or modulo by zero"),
}


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "experiments" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(FILES[name][0]).lstrip("\n"))
    return path


@pytest.mark.parametrize("name", sorted(FILES))
def test_an_error_in_the_file_is_one_message_with_file_and_line(tmp_path, name):
    path = _write(tmp_path, name)
    _, line, error = FILES[name]
    with pytest.raises(ConfigError) as err:
        load_experiment(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}, line {line}: {error}"), message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["syntax", "name_error"])
def test_radfm_train_prints_it_as_one_line_with_exit_code_2(tmp_path, capsys, name):
    path = _write(tmp_path, name)
    _, line, error = FILES[name]
    code = cli.main(["train", "--config", str(path), "--workdir", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.strip() == f"radfm train: error: {path}, line {line}: {error}"
    assert not (tmp_path / "run").exists()


def test_an_unknown_variant_names_the_line_that_refuses_it():
    with pytest.raises(ConfigError, match=r"clip\.py, line \d+: ValueError: unknown variant 'huge'"):
        load_experiment(f"{CLIP}:huge")


def test_a_config_error_raised_in_the_file_gets_the_file_and_line(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(textwrap.dedent("""
        from radfm_jax.config.overrides import with_fields
        from radfm_jax.config.schema import ExperimentConfig


        def get_config(arg: str = ""):
            return with_fields(ExperimentConfig(), {"totl_steps": 3})
        """).lstrip("\n"))
    with pytest.raises(ConfigError, match=r"typo\.py, line 6: unknown config key 'totl_steps'; "
                                          r"did you mean 'total_steps'\?$"):
        load_experiment(str(path))


def test_other_spec_files_get_the_same_message(tmp_path):
    path = tmp_path / "sweep.py"
    path.write_text("def get_sweep(arg=''):\n    return undefined_grid(arg)\n")
    with pytest.raises(ConfigError, match=r"sweep\.py, line 2: NameError: name 'undefined_grid' is not defined$"):
        call_spec_file(str(path), "get_sweep", ExperimentConfig, "sweep", "experiments/scaling/x.py")
