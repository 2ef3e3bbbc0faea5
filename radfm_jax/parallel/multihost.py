"""Several processes, one run: joining JAX's distributed runtime and the few agreements the
training loop needs between processes (who writes files, when to stop, who prepares data first).

How a process finds the others, first match wins:

1. ``RADFM_COORDINATOR_ADDRESS`` (host:port of process 0), ``RADFM_NUM_PROCESSES``,
   ``RADFM_PROCESS_ID`` and optionally ``RADFM_LOCAL_DEVICE_IDS`` (comma-separated): explicit,
   e.g. several processes on one machine, or a launcher that sets them (tpu/slurm_train.sbatch).
2. ``RADFM_DISTRIBUTED=auto``: JAX detects the cluster (Cloud TPU pods, Slurm, Open MPI,
   Kubernetes); tpu/launch.py sets it on every TPU VM worker.
3. An ``srun`` step with more than one task (``SLURM_STEP_NUM_TASKS`` > 1): JAX's Slurm
   detection (one process per task, each task using the GPU numbered by its SLURM_LOCALID).
4. Otherwise a single process. ``RADFM_DISTRIBUTED=off`` forces this, even inside Slurm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import jax
from jax.experimental import multihost_utils

from radfm_jax.errors import ConfigError

log = logging.getLogger(__name__)

COORDINATOR = "RADFM_COORDINATOR_ADDRESS"
NUM_PROCESSES = "RADFM_NUM_PROCESSES"
PROCESS_ID = "RADFM_PROCESS_ID"
LOCAL_DEVICE_IDS = "RADFM_LOCAL_DEVICE_IDS"
MODE = "RADFM_DISTRIBUTED"
_EXPLICIT = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)


@dataclasses.dataclass(frozen=True)
class DistributedSetup:
    """How this process joins the run (read from the environment; nothing initialized)."""

    kind: Literal["single", "explicit", "auto", "slurm"]
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ConfigError(f"{name}={environ[name]!r} is not an integer") from None


def _explicit(environ: Mapping[str, str]) -> DistributedSetup:
    missing = [name for name in _EXPLICIT if not environ.get(name)]
    if missing:
        given = [name for name in (*_EXPLICIT, LOCAL_DEVICE_IDS) if environ.get(name)]
        raise ConfigError(
            f"{', '.join(given)} set but {', '.join(missing)} not: a multi-process run needs all of "
            f"{', '.join(_EXPLICIT)} (unset them all for a single process)"
        )
    address = environ[COORDINATOR]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{COORDINATOR}={address!r} is not host:port (e.g. 10.0.0.2:8476, process 0's host)")
    count, index = _int(environ, NUM_PROCESSES), _int(environ, PROCESS_ID)
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"{PROCESS_ID}={index} must be in [0, {NUM_PROCESSES}={count})")
    device_ids = None
    if environ.get(LOCAL_DEVICE_IDS):
        try:
            device_ids = tuple(int(part) for part in environ[LOCAL_DEVICE_IDS].split(","))
        except ValueError:
            raise ConfigError(f"{LOCAL_DEVICE_IDS}={environ[LOCAL_DEVICE_IDS]!r} is not a comma-separated "
                              "list of device numbers (e.g. 0,1)") from None
    return DistributedSetup("explicit", address, count, index, device_ids)


def distributed_setup(environ: Mapping[str, str]) -> DistributedSetup:
    """Decide from the environment alone (see the module docstring for the order)."""
    mode = environ.get(MODE, "")
    if mode not in ("", "auto", "off"):
        raise ConfigError(f"{MODE}={mode!r}: use 'auto' (let JAX detect the cluster), 'off', or leave it unset")
    if mode == "off":
        return DistributedSetup("single")
    if any(environ.get(name) for name in (*_EXPLICIT, LOCAL_DEVICE_IDS)):
        return _explicit(environ)
    if mode == "auto":
        return DistributedSetup("auto")
    step_tasks = environ.get("SLURM_STEP_NUM_TASKS", "")
    if step_tasks.isdigit() and int(step_tasks) > 1 and environ.get("SLURM_JOB_ID"):
        return DistributedSetup("slurm")
    if environ.get("SLURM_NTASKS", "1").isdigit() and int(environ.get("SLURM_NTASKS", "1")) > 1:
        log.warning("SLURM_NTASKS=%s but this is not an srun step: running as one process "
                    "(start one per task with srun; see tpu/README.md)", environ["SLURM_NTASKS"])
    return DistributedSetup("single")


def initialize_distributed(environ: Mapping[str, str] | None = None) -> DistributedSetup:
    """Join the distributed runtime if the environment asks for it; call before any JAX device
    use (the CLI does, for `radfm train` and `radfm eval`). Safe to call more than once."""
    setup = distributed_setup(os.environ if environ is None else environ)
    if setup.kind != "single" and not jax.distributed.is_initialized():
        # Only the CPU client reads this; without it CPU processes cannot run collectives.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=setup.coordinator_address,
            num_processes=setup.num_processes,
            process_id=setup.process_id,
            local_device_ids=list(setup.local_device_ids) if setup.local_device_ids else None,
        )
        log.info("process %d of %d (%s); %d local of %d devices (%s)", jax.process_index(),
                 jax.process_count(), setup.kind, jax.local_device_count(), jax.device_count(),
                 jax.default_backend())
    return setup


def is_primary() -> bool:
    """Process 0 alone writes the workdir's files (config, metrics, evaluations, TensorBoard)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait until every process reaches the barrier `name` (nothing to wait for alone)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def primary_first(name: str) -> Iterator[None]:
    """Process 0 runs the block, then the others: for work that writes shared files when they
    are missing (building a data set, training a tokenizer), so processes never race on them."""
    if not is_primary():
        sync(name)
    yield
    if is_primary():
        sync(name)


def start_preemption_sync(start_step: int) -> None:
    """Join JAX's preemption sync service at `start_step` (the step training resumes from, the
    same on every process); then `reached_preemption_sync_point` agrees on when to stop.

    jax.distributed.initialize starts the service and installs its own SIGTERM handler in C++;
    a later Python `signal.signal(SIGTERM, ...)` would replace that handler and the service
    would never hear of the signal, so multi-process runs must not install one. The service's
    step counters start at 0: call this before the first step so that a resumed run's counter
    is already at `start_step` if a SIGTERM arrives while it compiles."""
    if not jax.distributed.is_initialized():
        raise RuntimeError("several processes but jax.distributed is not initialized: call "
                           "multihost.initialize_distributed() before using any device")
    try:
        multihost_utils.reached_preemption_sync_point(start_step)
    except RuntimeError:  # jax_enable_preemption_service is off: SIGTERM would kill the process
        raise ConfigError(
            "JAX's preemption service is off (jax_enable_preemption_service / "
            "JAX_ENABLE_PREEMPTION_SERVICE), so processes cannot agree on a step to save at on "
            "SIGTERM: leave it on (the default) for multi-process training"
        ) from None


def reached_preemption_sync_point(step: int) -> bool:
    """True on every process after the same step once SIGTERM reached any of them; call after
    every step, from the step after `start_preemption_sync`'s. A local check (no exchange
    between processes, so the host keeps queuing steps): in the background the coordination
    service hears of the signal, waits for each process's latest step (each process blocks
    here meanwhile) and picks the step after the furthest one."""
    return multihost_utils.reached_preemption_sync_point(step)


def gather_to_host(tree: Any) -> Any:
    """The full value of each (batch-sharded) global array as NumPy, on every process."""
    return multihost_utils.process_allgather(tree, tiled=True)
