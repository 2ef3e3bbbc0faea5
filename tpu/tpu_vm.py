#!/usr/bin/env python3
"""Cloud TPU VMs for radfm_jax: create, set up, run on every worker, follow logs, stop, delete.

    python tpu/tpu_vm.py --name radfm --project P --zone us-central2-b --accelerator-type v4-32 ACTION

Actions: create | setup (copy this working tree to every worker and pip-install it) | sync (copy
only) | run -- radfm train ... | logs | stop | delete. `--dry-run` prints the exact commands
instead of running them (no gcloud needed). Only the Python standard library is used, so it runs
on a laptop without the project installed. See tpu/README.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REMOTE_DIR = "~/radfm_jax"  # the code on every worker
ARCHIVE = "/tmp/radfm_jax-code.tar.gz"  # local and remote path of the copied working tree
LOG = "~/radfm_jax-run.log"
PID = "~/radfm_jax-run.pid"


def _common(args: argparse.Namespace) -> list[str]:
    return [f"--project={args.project}", f"--zone={args.zone}"]


def _ssh(args: argparse.Namespace, command: str, worker: str = "all") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *_common(args), f"--worker={worker}",
            f"--command={command}"]


def create(args: argparse.Namespace) -> list[list[str]]:
    if args.queued:  # waits in a queue for capacity instead of failing when there is none
        command = ["gcloud", "compute", "tpus", "queued-resources", "create", args.name, f"--node-id={args.name}",
                   *_common(args), f"--accelerator-type={args.accelerator_type}",
                   f"--runtime-version={args.version}"]
    else:
        command = ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *_common(args),
                   f"--accelerator-type={args.accelerator_type}", f"--version={args.version}"]
    return [command + (["--spot"] if args.spot else [])]


def sync(args: argparse.Namespace) -> list[list[str]]:
    # The working tree as git sees it (tracked and new files, nothing ignored: no runs/, caches).
    pack = (f"cd {shlex.quote(str(REPO))} && git ls-files -z --cached --others --exclude-standard "
            f"| tar --null -T - -czf {ARCHIVE}")
    unpack = f"mkdir -p {REMOTE_DIR} && tar -xzf {ARCHIVE} -C {REMOTE_DIR} && rm {ARCHIVE}"
    return [
        ["bash", "-c", pack],
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", ARCHIVE, f"{args.name}:{ARCHIVE}", *_common(args),
         "--worker=all"],
        _ssh(args, unpack),
    ]


def setup(args: argparse.Namespace) -> list[list[str]]:
    install = f'cd {REMOTE_DIR} && python3 -m pip install -q -U pip && python3 -m pip install -q -e ".[tpu]"'
    return sync(args) + [_ssh(args, install)]


def run(args: argparse.Namespace) -> list[list[str]]:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("run: give the command after --, e.g. run -- radfm train --config ... --workdir ...")
    # One process per worker; RADFM_DISTRIBUTED=auto lets jax.distributed.initialize() find the
    # pod's workers. In the background, so closing this terminal does not stop training.
    remote = (f"cd {REMOTE_DIR} && export PATH=$HOME/.local/bin:$PATH RADFM_DISTRIBUTED=auto && "
              f"nohup {shlex.join(command)} > {LOG} 2>&1 < /dev/null & echo $! > {PID}")
    return [_ssh(args, remote)]


def logs(args: argparse.Namespace) -> list[list[str]]:
    return [_ssh(args, f"tail -n 200 -f {LOG}", worker=args.worker)]


def stop(args: argparse.Namespace) -> list[list[str]]:
    # SIGTERM is the preemption path: every process saves a checkpoint at the same step and exits.
    return [_ssh(args, f"kill -TERM $(cat {PID})")]


def delete(args: argparse.Namespace) -> list[list[str]]:
    if args.queued:  # --force also deletes the TPU VM the queued resource holds
        return [["gcloud", "compute", "tpus", "queued-resources", "delete", args.name, *_common(args),
                 "--force", "--quiet"]]
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name, *_common(args), "--quiet"]]


ACTIONS = {"create": create, "setup": setup, "sync": sync, "run": run, "logs": logs, "stop": stop, "delete": delete}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="TPU VM (and queued resource) name")
    parser.add_argument("--project", required=True)
    parser.add_argument("--zone", required=True, help="e.g. us-central2-b (v4), us-east5-b (v5p)")
    parser.add_argument("--accelerator-type", default="v4-8", help="e.g. v4-8, v4-32, v5p-64, v5litepod-16")
    parser.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM software version")
    parser.add_argument("--queued", action="store_true", help="create/delete a queued resource")
    parser.add_argument("--spot", action="store_true", help="spot capacity (may be preempted: SIGTERM)")
    parser.add_argument("--worker", default="0", help="logs: which worker's log to follow")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run: -- radfm train ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command and args.action != "run":
        raise SystemExit(f"{args.action}: unexpected arguments {args.command}")
    commands = ACTIONS[args.action](args)
    if args.dry_run:
        print("\n".join(shlex.join(command) for command in commands))
        return 0
    if shutil.which("gcloud") is None:
        raise SystemExit("gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk) "
                         "or use --dry-run to see the commands")
    for command in commands:
        print("+", shlex.join(command), file=sys.stderr, flush=True)
        code = subprocess.run(command).returncode
        if code:
            print(f"{args.action}: the command above failed (exit {code})", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
