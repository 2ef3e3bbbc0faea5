"""The cluster launchers in tpu/: their --dry-run output is the exact commands they would run.
The Slurm batch script is also executed, with stand-ins for scontrol, srun and radfm."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TPU = ["--name", "radfm-pod", "--project", "my-project", "--zone", "us-central2-b", "--accelerator-type", "v4-32"]
RADFM = ["radfm", "train", "--config", "experiments/synthetic_cxr/clip.py", "--workdir", "/mnt/shared/runs/clip"]


def _dry_run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "tpu" / script), "--dry-run", *args],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _tpu_commands(*args: str) -> list[list[str]]:
    return [shlex.split(line) for line in _dry_run("tpu_vm.py", *TPU, *args).splitlines()]


def _flags(command: list[str]) -> dict[str, str]:
    return dict(part[2:].split("=", 1) for part in command if part.startswith("--") and "=" in part)


def test_create_a_tpu_vm_or_a_queued_resource():
    [vm] = _tpu_commands("create")
    assert vm[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "radfm-pod"]
    assert _flags(vm) == {"project": "my-project", "zone": "us-central2-b", "accelerator-type": "v4-32",
                          "version": "tpu-ubuntu2204-base"}
    [queued] = _tpu_commands("--queued", "--spot", "create")
    assert queued[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "radfm-pod"]
    assert _flags(queued)["node-id"] == "radfm-pod" and _flags(queued)["accelerator-type"] == "v4-32"
    assert _flags(queued)["runtime-version"] == "tpu-ubuntu2204-base" and "--spot" in queued


def test_setup_copies_the_working_tree_to_every_worker_and_installs_it():
    pack, scp, unpack, install = _tpu_commands("setup")
    assert pack[:2] == ["bash", "-c"] and "git ls-files" in pack[2] and "tar" in pack[2]
    archive = pack[2].rsplit(" ", 1)[1]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5:7] == [archive, f"radfm-pod:{archive}"] and "--worker=all" in scp
    for ssh in (unpack, install):
        assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "radfm-pod"]
        assert _flags(ssh)["worker"] == "all" and _flags(ssh)["project"] == "my-project"
    assert f"tar -xzf {archive}" in _flags(unpack)["command"]
    assert 'pip install -q -e ".[tpu]"' in _flags(install)["command"]


def test_run_starts_the_radfm_command_on_every_worker_with_distributed_auto():
    [ssh] = _tpu_commands("run", "--", *RADFM, "--set", "model.width=256")
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "radfm-pod"]
    flags = _flags(ssh)
    assert flags["worker"] == "all" and flags["zone"] == "us-central2-b"
    assert "RADFM_DISTRIBUTED=auto" in flags["command"]
    assert shlex.join([*RADFM, "--set", "model.width=256"]) in flags["command"]


def test_logs_stop_and_teardown():
    [logs] = _tpu_commands("--worker", "3", "logs")
    assert _flags(logs)["worker"] == "3" and "tail" in _flags(logs)["command"]
    [stop] = _tpu_commands("stop")
    assert _flags(stop)["worker"] == "all" and "kill -TERM" in _flags(stop)["command"]
    [delete] = _tpu_commands("delete")
    assert delete[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "radfm-pod"] and "--quiet" in delete
    [delete_queued] = _tpu_commands("--queued", "delete")
    assert delete_queued[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "radfm-pod"]
    assert "--force" in delete_queued


def test_run_without_a_command_says_what_to_give():
    result = subprocess.run([sys.executable, str(REPO / "tpu" / "tpu_vm.py"), *TPU, "--dry-run", "run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "give the command after --" in result.stderr


def _slurm(*args: str) -> tuple[str, list[str]]:
    out = _dry_run("slurm.py", *args, "--", *RADFM, "--set", "batch_size=64").splitlines()
    assert out[0].startswith("# ") and out[1] == "#!/bin/bash"
    return "\n".join(out[1:-1]) + "\n", shlex.split(out[-1])


def _run_job(script: str, folder: Path) -> subprocess.CompletedProcess:
    """The batch script run by bash with the fake tools of _fake_tools on its PATH."""
    path = folder / "job.sh"
    path.write_text(script)
    tools = folder / "bin"
    tools.mkdir()
    result = subprocess.run(["bash", str(path)], env=_fake_tools(tools), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def _fake_tools(folder: Path) -> dict:
    """scontrol lists two nodes; srun starts the task command as 4 tasks (2 per node); radfm
    prints its environment and arguments."""
    tools = {
        "scontrol": 'printf "gpu-node-07\\ngpu-node-08\\n"',
        "srun": 'for i in 0 1 2 3; do SLURM_PROCID=$i SLURM_LOCALID=$((i % 2)) "${@:2}"; done',
        "radfm": 'echo "process=$RADFM_PROCESS_ID of $RADFM_NUM_PROCESSES at $RADFM_COORDINATOR_ADDRESS '
                 'devices=${RADFM_LOCAL_DEVICE_IDS:-all} args=$*"',
    }
    for name, body in tools.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{folder}:{os.environ['PATH']}", SLURM_JOB_NODELIST="gpu-node-[07-08]",
                SLURM_JOB_ID="123", SLURM_NTASKS="4")


def test_slurm_batch_script_and_submission(tmp_path):
    script, submit = _slurm("--nodes", "2", "--gpus-per-node", "2", "--partition", "a100", "--time", "01:00:00",
                            "--script", str(tmp_path / "job.sbatch"))
    assert submit == ["sbatch", str(tmp_path / "job.sbatch")]
    for directive in ("--nodes=2", "--ntasks-per-node=2", "--gpus-per-node=2", "--partition=a100",
                      "--time=01:00:00", "--signal=TERM@120"):
        assert f"#SBATCH {directive}\n" in script
    assert "srun " in script

    result = _run_job(script, tmp_path)
    port = 20000 + 123 % 20000
    args = shlex.join([*RADFM[1:], "--set", "batch_size=64"])
    assert result.stdout.splitlines() == [
        f"process={i} of 4 at gpu-node-07:{port} devices={i % 2} args={args}" for i in range(4)
    ]


def test_slurm_one_process_per_node_sees_all_its_gpus(tmp_path):
    script, _ = _slurm("--nodes", "2", "--gpus-per-node", "8", "--per", "node")
    assert "#SBATCH --ntasks-per-node=1\n" in script and "#SBATCH --gpus-per-node=8\n" in script
    result = _run_job(script, tmp_path)
    assert all("devices=all" in line for line in result.stdout.splitlines())
