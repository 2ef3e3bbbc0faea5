"""The training loop: resume, step, log, evaluate, checkpoint, handle preemption."""

from __future__ import annotations

import contextlib
import logging
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from tqdm import tqdm

import radfm_jax
from radfm_jax.config.overrides import to_dict
from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.data.device_put import prefetch_to_device
from radfm_jax.data.pipeline import make_train_loader
from radfm_jax.errors import ConfigError, DamagedCheckpointError, DiskFullError, NonFiniteError
from radfm_jax.evals.evaluators import evaluate_all
from radfm_jax.parallel import multihost
from radfm_jax.parallel.mesh import batch_size_per_process, replicated
from radfm_jax.reporting import out_of_space
from radfm_jax.train import checkpoint
from radfm_jax.train.eval_outputs import record_evaluation
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.flops import ThroughputMeter
from radfm_jax.train.integrity import all_finite
from radfm_jax.train.metric_writer import MetricWriter, format_eval_table
from radfm_jax.train.paths import is_local, workdir_path
from radfm_jax.train.step import CompiledStep
from radfm_jax.train.workdir import check_workdir, claim_workdir
from radfm_jax.train.workdir_lock import WorkdirLock

log = logging.getLogger(__name__)


def checkpoint_metadata(config: ExperimentConfig) -> dict:
    return {"config": to_dict(config), "radfm_jax_version": radfm_jax.__version__}


class _Preemption:
    """Whether SIGTERM asks to save and stop after `step`, checked between steps without host
    syncs. One process: a Python handler sets a flag (no work in the handler). Several: JAX's
    preemption sync service, which picks one step for all when any process gets SIGTERM (its
    C++ handler must stay installed, so no Python handler then)."""

    def __init__(self, start_step: int):
        self._requested = False
        self._several = jax.process_count() > 1
        if self._several:
            multihost.start_preemption_sync(start_step)
        else:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self._requested = True

    def reached(self, step: int) -> bool:
        return multihost.reached_preemption_sync_point(step) if self._several else self._requested

    def restore(self):
        if not self._several:
            signal.signal(signal.SIGTERM, self._previous)


def train(config: ExperimentConfig, workdir: epath.PathLike, *, allow_config_change: bool = False,
          resume_from_previous: bool = False, start_only: bool = False) -> dict:
    """Train (or resume) in `workdir`; returns the last evaluation results ({} if none).
    `resume_from_previous`: a damaged newest checkpoint is moved to damaged_checkpoints/ and
    the run resumes from the newest one that restores and verifies. `start_only`: save the
    starting state (e.g. imported weights) as step 0 of a new workdir and stop, so `radfm eval`,
    `radfm finetune --from` and a resumed `radfm train` read it like any run's."""
    workdir = workdir_path(workdir)
    check_workdir(workdir, config, allow_config_change=allow_config_change)
    exp = Experiment.build(config)  # data and model problems surface before the workdir is touched
    # Every process has checked the workdir before process 0 writes config.json, and none
    # creates checkpoints/ before it has.
    multihost.sync("radfm: workdir checked")
    # One run per workdir: held until everything is saved and closed. Object stores have no
    # exclusive create to build the lock on.
    if not is_local(workdir):
        log.warning("no workdir lock on %s: make sure no other run uses it", workdir)
    with WorkdirLock(workdir, enabled=multihost.is_primary() and is_local(workdir)):
        return _train_locked(config, exp, workdir, allow_config_change, resume_from_previous, start_only)


def _train_locked(config: ExperimentConfig, exp: Experiment, workdir: epath.Path, allow_config_change: bool,
                  resume_from_previous: bool, start_only: bool) -> dict:
    if multihost.is_primary():
        claim_workdir(workdir, config, allow_config_change=allow_config_change)
    multihost.sync("radfm: workdir claimed")
    log.info("mesh %s; %d parameters; %.2f%% of parameter bytes replicated", dict(exp.mesh.shape),
             exp.num_params, 100 * exp.layout.replicated_fraction)
    for line in exp.layout.param_lines:
        log.info("param %s", line)

    manager = checkpoint.make_manager(workdir, keep=config.keep_checkpoints)
    if start_only and manager.latest_step() is not None:
        manager.close()
        raise ConfigError(f"{workdir} already holds checkpoints up to step {manager.latest_step()}; use a new workdir")
    loader = make_train_loader(
        exp.data.sources["train"],
        tokenizer=exp.data.tokenizer,
        data_cfg=config.data,
        global_batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        keys=tuple(exp.objective.batch_spec()),
        extra_transforms=exp.objective.data_transforms(),
    )
    batch_size_per_process(config.batch_size, exp.mesh)  # validates divisibility
    state, start_step = _resume(manager, exp, loader, resume_from_previous)
    if state is not None:  # step 0 too: an imported start (radfm weights import)
        log.info("resumed from step %d", start_step)
    else:
        state = exp.init_state()
    if start_only:
        checkpoint.save(manager, 0, state, loader, checkpoint_metadata(config))
        manager.wait_until_finished()
        manager.close()
        log.info("saved the starting state as step 0 in %s", workdir)
        return {}

    step_fn = CompiledStep(exp.train_step())
    evaluators = exp.evaluators() if config.eval_every else []
    writer = MetricWriter(workdir, resume_step=start_step) if multihost.is_primary() else None
    metadata = checkpoint_metadata(config)
    preemption = _Preemption(start_step)
    results: dict = {}
    try:
        results = _run_steps(config, state, step_fn, loader, exp, evaluators, writer, manager,
                             metadata, preemption, start_step)
        manager.wait_until_finished()  # a failed asynchronous save surfaces here
    except Exception as err:
        _close_quietly(manager)  # the error being raised says what went wrong
        if writer:
            with contextlib.suppress(Exception):  # a full disk fails this too; the error raised says so
                writer.close()
            writer = None
        full = out_of_space(err)
        if full is None:
            raise
        raise DiskFullError(
            f"no space left on the device holding {full or workdir}; the checkpoints in "
            f"{workdir / 'checkpoints'} up to step {manager.latest_step() or 0} are intact (an unfinished "
            "save is discarded). Free space there (or move the workdir) and rerun to resume") from None
    else:
        manager.close()
    finally:
        preemption.restore()
        if writer:
            writer.close()
    return results


def _close_quietly(manager) -> None:
    try:
        manager.wait_until_finished()
    except Exception:
        pass
    try:
        manager.close()
    except Exception:
        pass


def _resume(manager, exp: Experiment, loader, resume_from_previous: bool):
    """(state, step) of the newest checkpoint, or (None, 0) when there is none."""
    while (step := manager.latest_step()) is not None:
        try:
            state, _ = checkpoint.restore(manager, step, exp.layout.abstract, exp.layout.shardings,
                                          data_iterator=loader)
            return state, step
        except DamagedCheckpointError as err:
            earlier = [s for s in manager.all_steps() if s < step]
            if not resume_from_previous:
                hint = (f"; or rerun with --resume-from-previous to set it aside (into "
                        f"{checkpoint.DAMAGED_DIR}/) and resume from step {max(earlier)}") if earlier else ""
                raise DamagedCheckpointError(f"{err}{hint}", step) from None
            multihost.sync("radfm: damaged checkpoint found")
            if multihost.is_primary():
                log.warning("%s", err)
                log.warning("set step %d aside: %s", step, checkpoint.set_aside(manager, step))
            multihost.sync("radfm: damaged checkpoint set aside")
            manager.reload()
    return None, 0


def _nonfinite(what: str, manager) -> NonFiniteError:
    """The one-line report of a run that went non-finite, naming the last good checkpoint
    (every saved state was checked finite before it was written)."""
    manager.wait_until_finished()
    step = manager.latest_step()
    where = ("no checkpoint was saved, so a rerun starts from the beginning" if step is None else
             f"the last good checkpoint is step {step} ({epath.Path(manager.directory) / str(step)}), nothing "
             "after it was saved and a rerun resumes from it")
    return NonFiniteError(f"{what}; {where}. Lower optim.learning_rate (with --allow-config-change) or "
                          "check the data")


def _run_steps(config, state, step_fn, loader, exp, evaluators, writer, manager, metadata,
               preemption, start_step) -> dict:
    step = start_step
    results: dict = {}
    if step >= config.total_steps:
        log.info("already trained to step %d of %d", step, config.total_steps)
        return results
    stream = prefetch_to_device(loader, config.data.prefetch_batches, exp.batch_shardings())
    # closed before an error propagates, so the error is the last thing printed
    with tqdm(total=config.total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
              disable=not multihost.is_primary()) as progress:
        nonfinite = jax.device_put(np.zeros((), bool), replicated(exp.mesh))  # where the loss lives
        last_log_time, last_log_step = time.perf_counter(), step
        throughput = ThroughputMeter(config.batch_size, exp.flops().model, list(exp.mesh.devices.flat), step_fn)
        for batch in stream:
            with jax.transfer_guard("disallow"):  # any implicit host<->device copy is a bug here
                state, metrics = step_fn(state, batch)
                nonfinite = nonfinite | ~jnp.isfinite(metrics["loss"])
            step += 1
            last = step == config.total_steps
            if step % config.log_every == 0 or step == 1 or last:
                host = jax.device_get(metrics)  # the only host sync: on log steps
                if bool(jax.device_get(nonfinite)):
                    raise _nonfinite(f"the loss became non-finite by step {step} (loss {float(host['loss'])} at "
                                     f"step {step})", manager)
                now = time.perf_counter()
                steps = step - last_log_step
                step_time = (now - last_log_time) / steps
                host = {key: float(value) for key, value in host.items()}
                host.update(step_time_s=step_time, examples_per_sec=config.batch_size / step_time,
                            **throughput.metrics(step_time))
                if writer:
                    writer.write_train(step, host)
                progress.set_postfix(loss=f"{host['loss']:.4f}", ex_s=f"{host['examples_per_sec']:.0f}")
                last_log_time, last_log_step = now, step
            progress.update(1)
            if evaluators and (step % config.eval_every == 0 or last):
                results = evaluate_all(evaluators, state.params)
                path = record_evaluation(writer, exp, step, state.params, evaluators, results)
                if path:
                    log.info("step %d eval -> %s", step, path)
                last_log_time = time.perf_counter()  # keep eval time out of step timings
            preempted = preemption.reached(step)  # the same step on every process
            if last or preempted or step % config.checkpoint_every == 0:
                # One sync per save (never per step): a state that went non-finite since the
                # last check is not saved, so max_to_keep cannot push out the good checkpoints.
                if not bool(jax.device_get(~nonfinite & all_finite(state.params))):
                    raise _nonfinite(f"the loss or the parameters became non-finite by step {step}, "
                                     "which was not saved", manager)
                checkpoint.save(manager, step, state, stream, metadata)
            if preempted:
                log.warning("SIGTERM: saved step %d; exiting so the run can resume", step)
                break
            if last:
                break
    if results and multihost.is_primary():
        print(f"\nevaluation at step {step}:\n{format_eval_table(results)}")
    return results
