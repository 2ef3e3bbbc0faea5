"""Importing radfm_jax changes no global state, and `radfm compile` needs no training loop."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SNAPSHOT = """
import sys, threading
import jax, flax
from absl import flags

def snapshot():
    return {
        "jax": dict(jax.config.values),
        "flax": {name: getattr(flax.config, name) for name in dir(flax.config) if name.startswith("flax_")},
        "hooks": (sys.excepthook, sys.unraisablehook, threading.excepthook),
        "absl_parsed": flags.FLAGS.is_parsed(),
        "signals": __import__("signal").getsignal(__import__("signal").SIGTERM),
    }
"""

IMPORT_EVERYTHING = SNAPSHOT + """
import importlib, pkgutil
import radfm_jax
before = snapshot()
names = [m.name for m in pkgutil.walk_packages(radfm_jax.__path__, "radfm_jax.")]
for name in names:
    importlib.import_module(name)
after = snapshot()
changed = {key for key in before if before[key] != after[key]}
print(len(names), sorted(changed))
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)


def test_importing_every_module_changes_no_flag_hook_or_absl_state():
    result = _python(IMPORT_EVERYTHING)
    assert result.returncode == 0, result.stderr[-3000:]
    count, changed = result.stdout.split(" ", 1)
    assert int(count) > 100  # every module of the package was imported
    assert changed.strip() == "[]", changed


def test_compile_help_starts_without_the_training_loop():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "radfm_jax.cli", "compile", "--help"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0 and "--topology" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "radfm_jax.errors" in imported  # the CLI module itself runs as __main__
    assert not {name for name in imported if name.startswith(("radfm_jax.train", "jax", "flax"))}


def test_the_compile_tool_imports_no_training_loop():
    result = _python("import sys, radfm_jax.tools.aot_compile; "
                     "print('radfm_jax.train.loop' in sys.modules, 'radfm_jax.train.checkpoint' in sys.modules)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "False"]


def test_no_module_exits_the_interpreter_behind_the_callers_back():
    offenders = [path for path in (REPO / "radfm_jax").rglob("*.py") if "os._exit" in path.read_text()]
    assert offenders == []
