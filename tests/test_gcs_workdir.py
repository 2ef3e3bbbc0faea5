"""`--workdir gs://bucket/run` end to end, through a local Cloud Storage emulator: config.json,
metrics.jsonl, evaluations and Orbax checkpoints all go to the bucket (epath via gcsfs, arrays via
tensorstore's gcs driver), a second run resumes from the bucket, and `radfm eval` reads it back.
The losses equal a local workdir's. Slow tier; skipped without gcsfs and gcp-storage-emulator."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

REPO = Path(__file__).resolve().parents[1]
SMOKE = f"{REPO / 'experiments' / 'synthetic_cxr' / 'clip.py'}:smoke"
BUCKET = "radfm-test"
RUN = ["--config", SMOKE, "--set", "log_every=1", "--set", "eval_every=6", "--set", "checkpoint_every=3"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gcs_env(tmp_path_factory):
    """An in-memory emulator (tests/support/gcs_emulator.py) on a free port, and the environment that points every client at it
    (set in this process too, for the checks through epath)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    emulator = subprocess.Popen([sys.executable, str(REPO / "tests" / "support" / "gcs_emulator.py"), str(port), BUCKET],
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=1).read()
            break
        except OSError:
            assert emulator.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    settings = {
        "STORAGE_EMULATOR_HOST": url,  # gcsfs (epath's gs:// backend) and google-cloud-storage
        "FSSPEC_GCS_TOKEN": "anon",
        # gcsfs asks a gRPC service whether a bucket is zonal; an HTTP emulator cannot answer
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "TENSORSTORE_GCS_HTTP_URL": url,  # tensorstore's gcs kvstore: the checkpoint arrays
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",  # never real credentials
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,  # array_record's own GCS client
        "GOOGLE_CLOUD_PROJECT": "test-project",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.setdefault("RADFM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    env.pop("XLA_FLAGS", None)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    emulator.terminate()
    emulator.wait()


def radfm(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "radfm_jax.cli", *args], env=env, capture_output=True,
                            text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def losses(text: str) -> dict[int, float]:
    return {record["step"]: record["loss"] for record in map(json.loads, text.splitlines())}


def test_a_gs_workdir_trains_resumes_and_evaluates_like_a_local_one(gcs_env, tmp_path):
    from etils import epath

    # The same two runs on each: 6 steps, then continued to 9 (a longer schedule) from step 6.
    local, remote = tmp_path / "local", epath.Path(f"gs://{BUCKET}/runs/clip")
    for workdir in (os.fspath(local), os.fspath(remote)):
        radfm(gcs_env, "train", *RUN, "--workdir", workdir, "--set", "total_steps=6")
        resumed = radfm(gcs_env, "train", *RUN, "--workdir", workdir, "--set", "total_steps=9",
                        "--allow-config-change")
        assert "resumed from step 6" in resumed.stderr
    assert json.loads((remote / "config.json").read_text())["total_steps"] == 9
    steps = sorted(int(p.name) for p in (remote / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6, 9]

    want, have = losses((local / "metrics.jsonl").read_text()), losses((remote / "metrics.jsonl").read_text())
    assert sorted(have) == sorted(want) == list(range(1, 10))  # appended across runs, each step once
    for step in want:
        assert have[step] == pytest.approx(want[step], rel=1e-6, abs=1e-6), step
    assert len(list(remote.glob("config.*.json"))) == 1  # the first run's config kept beside

    evaluated = radfm(gcs_env, "eval", "--workdir", os.fspath(remote), "--step", "6")
    assert "evaluation of step 6" in evaluated.stdout
    written = json.loads((remote / "eval" / "step_00000006.json").read_text())
    in_training = json.loads((local / "eval" / "step_00000006.json").read_text())
    assert written.keys() == in_training.keys()
    for key, value in in_training.items():
        assert written[key] == pytest.approx(value, abs=1e-6) if value is not None else written[key] is None, key
    assert (remote / "eval" / "step_00000006.zeroshot.predictions.npz").exists()
    assert not (REPO / "gs:").exists()  # nothing went to a local folder named after the URL
