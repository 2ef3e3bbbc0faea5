#!/usr/bin/env python3
"""Submit a radfm_jax run to a Slurm GPU cluster: one process per GPU (or per node) via srun.

    python tpu/slurm.py --nodes 2 --gpus-per-node 8 --partition gpu -- radfm train --config ... --workdir ...

Writes the batch script (default radfm-<job name>.sbatch) and calls `sbatch` on it; `--dry-run`
prints the script and the sbatch command instead (no Slurm needed). The script takes the first
node of the allocation as the coordinator and gives each task RADFM_PROCESS_ID=$SLURM_PROCID, so
radfm_jax.parallel.multihost joins them explicitly. Standard library only. See tpu/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = """\
#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={tasks_per_node}
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --cpus-per-task={cpus_per_task}
#SBATCH --time={time}
#SBATCH --output={output}
#SBATCH --signal=TERM@{grace}
{extra_directives}
# SIGTERM {grace} s before the time limit (or `scancel --signal=TERM <job>`) takes radfm's
# preemption path: every process saves a checkpoint at the same step and exits; submit again
# to resume.
{env_setup}
set -euo pipefail
# Process 0 runs on the first node of the allocation; the port follows the job id so that
# jobs sharing a node do not collide.
export RADFM_COORDINATOR_ADDRESS="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):$((20000 + SLURM_JOB_ID % 20000))"
export RADFM_NUM_PROCESSES="$SLURM_NTASKS"
srun --kill-on-bad-exit=1 bash -c {task}
"""


def _task(command: list[str], per: str) -> str:
    """What every task runs: its process id (and, one per GPU, its GPU) from Slurm, then radfm."""
    env = "export RADFM_PROCESS_ID=$SLURM_PROCID"
    if per == "gpu":  # every GPU of the node stays visible; each process takes one
        env += " RADFM_LOCAL_DEVICE_IDS=$SLURM_LOCALID"
    return shlex.quote(f"{env}; exec {shlex.join(command)}")


def batch_script(args: argparse.Namespace, command: list[str]) -> str:
    directives = [f"#SBATCH --partition={args.partition}"] if args.partition else []
    directives += [f"#SBATCH --account={args.account}"] if args.account else []
    return TEMPLATE.format(
        job_name=args.job_name,
        nodes=args.nodes,
        tasks_per_node=args.gpus_per_node if args.per == "gpu" else 1,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        output=f"{args.job_name}-%j.out",
        grace=args.grace_seconds,
        extra_directives="\n".join(directives),
        env_setup=args.env_setup or "# (no --env-setup: radfm must be on PATH on every node)",
        task=_task(command, args.per),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--per", choices=("gpu", "node"), default="gpu",
                        help="one process per GPU (default) or per node (using all its GPUs)")
    parser.add_argument("--cpus-per-task", type=int, default=8)
    parser.add_argument("--time", default="04:00:00", help="time limit, HH:MM:SS")
    parser.add_argument("--grace-seconds", type=int, default=120, help="SIGTERM this long before the limit")
    parser.add_argument("--partition", default="")
    parser.add_argument("--account", default="")
    parser.add_argument("--job-name", default="radfm")
    parser.add_argument("--env-setup", default="", help="a line run first, e.g. 'source ~/venvs/radfm/bin/activate'")
    parser.add_argument("--script", default="", help="where to write the batch script (default radfm-<job>.sbatch)")
    parser.add_argument("--dry-run", action="store_true", help="print the script and the sbatch command only")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- radfm train ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("give the command after --, e.g. -- radfm train --config ... --workdir ...")
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise SystemExit("--nodes and --gpus-per-node must be at least 1")
    script = batch_script(args, command)
    path = Path(args.script or f"radfm-{args.job_name}.sbatch")
    submit = ["sbatch", str(path)]
    if args.dry_run:
        print(f"# {path}\n{script}")
        print(shlex.join(submit))
        return 0
    if shutil.which("sbatch") is None:
        raise SystemExit("sbatch not found: run this on the cluster's login node, or use --dry-run")
    path.write_text(script)
    return subprocess.run(submit).returncode


if __name__ == "__main__":
    sys.exit(main())
