"""Ahead-of-time compilation of the real train step, without allocating a single array.

The step is built exactly as training builds it (train/experiment.py, with the config's
model, optimizer, objective and mesh rules), lowered on abstract inputs
(`jax.ShapeDtypeStruct`) and compiled either for this machine's devices ("local") or for a TPU
slice such as "v5e-256" from this CPU host, through libtpu's compile-only devices; "v5e-256x2"
is two such slices joined by the data-centre network (multi-slice: the mesh's data axis spans
the slices, radfm_jax/parallel/mesh.py). The report
gives per-chip memory from XLA's memory analysis against the chip's HBM and a closed-form
estimate, FLOPs per step from XLA's cost analysis and the analytic count, and the step time at
peak FLOP/s.

    radfm compile --config experiments/synthetic_cxr/clip.py --topology v5e-256 --json aot.json
    radfm compile --config experiments/synthetic_cxr/clip.py --topology v5e-256x2
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from radfm_jax.config.schema import ExperimentConfig
from radfm_jax.errors import ConfigError
from radfm_jax.parallel.chips import Chip, chip_for_device, parse_tpu_topology
from radfm_jax.parallel.mesh import BATCH_AXES, batch_size_per_process, group_by_slice
from radfm_jax.tools.memory_estimate import estimate_memory_per_chip
from radfm_jax.train.experiment import Experiment
from radfm_jax.train.flops import compiled_flops

LOCAL = "local"


@dataclasses.dataclass(frozen=True)
class Target:
    """The devices to compile for and the chip they are (None: unknown, e.g. a CPU)."""

    name: str
    devices: list[Any]
    chip: Chip | None


def target_devices(topology: str, *, peak_flops: float | None = None) -> Target:
    """"local": this process's devices; otherwise a TPU slice name such as "v5e-256", or
    several slices such as "v5e-256x2"."""
    if topology == LOCAL:
        devices = jax.devices()
        return Target(LOCAL, devices, chip_for_device(devices[0], peak_flops=peak_flops))
    slice_ = parse_tpu_topology(topology)
    if importlib.util.find_spec("libtpu") is None:
        raise ConfigError(
            f"compiling for the TPU slice '{topology}' needs libtpu on this machine: "
            "pip install 'radfm_jax[tpu]' (or compile for this machine with --topology local)"
        )
    devices = _compile_only_devices(slice_.name)
    chip = slice_.chip
    if peak_flops is not None:
        chip = dataclasses.replace(chip, peak_bf16_flops=float(peak_flops))
    return Target(slice_.name, devices, chip)


@functools.cache
def _compile_only_devices(slice_name: str) -> list[Any]:
    """libtpu's compile-only devices of a slice (or slices: each device has its slice_index);
    cached because every call makes new device objects, and a mesh and a sharding built from
    different calls do not match."""
    from jax.experimental import topologies

    return list(topologies.get_topology_desc(**parse_tpu_topology(slice_name).topology_desc_kwargs()).devices)


def compile_step(exp: Experiment) -> Any:
    """`exp.train_step().jit().lower(abstract state, abstract batch).compile()`; no array is
    allocated.

    Running out of device memory is a user's problem (batch too large for the chips), so it
    becomes a ConfigError with XLA's one-line reason.
    """
    batch_size_per_process(exp.config.batch_size, exp.mesh)  # the batch must split over the mesh
    lowered = exp.train_step().jit().lower(exp.layout.abstract, exp.abstract_batch())
    try:
        return lowered.compile()
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        raise ConfigError(
            f"the train step does not fit in device memory ({str(err).splitlines()[0]}); lower "
            "batch_size, set model.remat=full, or split parameters over more devices (mesh.fsdp)"
        ) from None


@dataclasses.dataclass(frozen=True)
class MemoryReport:
    """XLA's memory analysis of one device's program, bytes."""

    argument: int
    output: int
    alias: int  # outputs written in place of donated arguments (the train state)
    temp: int
    generated_code: int

    @property
    def total(self) -> int:
        """Live at the peak: inputs, outputs not aliased to inputs, scratch, code."""
        return self.argument + self.output - self.alias + self.temp + self.generated_code

    @classmethod
    def of(cls, compiled: Any) -> "MemoryReport":
        stats = compiled.memory_analysis()
        return cls(
            argument=int(stats.argument_size_in_bytes),
            output=int(stats.output_size_in_bytes),
            alias=int(stats.alias_size_in_bytes),
            temp=int(stats.temp_size_in_bytes),
            generated_code=int(stats.generated_code_size_in_bytes),
        )


def shard_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes of one device's shard of every leaf of `abstract` (shapes) under `shardings` (a
    tree of the same structure): what the leaves' argument buffers hold, before any padding a
    backend's memory layout adds. Shardings split evenly (jit requires it), so every device's
    shard has the same shape."""
    leaves, shards = jax.tree.leaves(abstract), jax.tree.leaves(shardings)
    return sum(math.prod(sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
               for leaf, sharding in zip(leaves, shards, strict=True))


def _tiled_bytes(shape: tuple[int, ...], layout: Any, itemsize: int) -> int:
    """Bytes of a buffer of `shape` in a tiled layout: dimensions in the layout's major-to-minor
    order, the minor ones rounded up to the first tile (XLA:TPU's (8, 128) and kin)."""
    dims = [shape[d] for d in layout.major_to_minor]
    tile = layout.tiling[0] if layout.tiling else ()
    for i, size in enumerate(reversed(tile)):
        if i < len(dims):
            dims[-1 - i] = -(-dims[-1 - i] // size) * size
    return math.prod(dims) * itemsize


def layout_padding(compiled: Any, abstract_args: Any) -> int | None:
    """Per device: bytes the compiled program's argument layouts add to the shards' own bytes
    (tile padding: XLA:TPU stores the two minor dimensions of an array in tiles of up to
    8 x 128 elements), or None where the backend gives no layouts."""
    try:
        formats = jax.tree.leaves(compiled.input_formats)
    except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    leaves = jax.tree.leaves(abstract_args)
    if len(formats) != len(leaves) or any(getattr(f, "layout", None) is None for f in formats):
        return None
    padding = 0
    for leaf, fmt in zip(leaves, formats):
        shape = fmt.sharding.shard_shape(leaf.shape)
        padding += _tiled_bytes(shape, fmt.layout, leaf.dtype.itemsize) - math.prod(shape) * leaf.dtype.itemsize
    return padding


@dataclasses.dataclass(frozen=True)
class MemoryBreakdown:
    """XLA's per-chip total split by what the bytes hold. The argument parts are the per-leaf
    shard bytes of the train state and the batch; `other_arguments` is what XLA's argument size
    has beyond them (on XLA:TPU the tile padding of small shards; `layout_padding` says how much
    of it the argument layouts explain). Gradients live in the temporaries with the activations
    and XLA does not tell them apart: `gradients` is one f32 copy of the trainable parameters'
    shards, an estimate, and `activations_and_scratch` the rest of the temporaries."""

    parameters: int
    optimizer_state: int
    extra_state: int  # the step counter and the objective's own state (an EMA teacher)
    batch: int
    other_arguments: int
    layout_padding: int | None
    outputs_not_aliased: int  # outputs not written into donated arguments (metrics)
    gradients: int
    activations_and_scratch: int
    generated_code: int
    analytic_state_bytes: float  # 12 bytes per parameter / state shards: f32 params, Adam mu, nu

    @property
    def total(self) -> int:
        return (self.parameters + self.optimizer_state + self.extra_state + self.batch + self.other_arguments
                + self.outputs_not_aliased + self.gradients + self.activations_and_scratch + self.generated_code)

    @property
    def temporaries(self) -> int:
        return self.gradients + self.activations_and_scratch

    @property
    def state_vs_analytic(self) -> float:
        """Parameters + optimizer state per chip against 12 bytes per parameter / state shards."""
        return (self.parameters + self.optimizer_state) / self.analytic_state_bytes

    @classmethod
    def of(cls, memory: MemoryReport, exp: Experiment, compiled: Any, state_shards: int) -> "MemoryBreakdown":
        layout, batch = exp.layout, exp.abstract_batch()
        parts = {
            "parameters": shard_bytes(layout.abstract.params, layout.shardings.params),
            "optimizer_state": shard_bytes(layout.abstract.opt_state, layout.shardings.opt_state),
            "extra_state": shard_bytes((layout.abstract.step, layout.abstract.extra),
                                       (layout.shardings.step, layout.shardings.extra)),
            "batch": shard_bytes(batch, {key: leaf.sharding for key, leaf in batch.items()}),
        }
        gradients = _gradient_bytes(exp)
        return cls(
            **parts,
            other_arguments=memory.argument - sum(parts.values()),
            layout_padding=layout_padding(compiled, (layout.abstract, batch)),
            outputs_not_aliased=memory.output - memory.alias,
            gradients=gradients,
            activations_and_scratch=memory.temp - gradients,
            generated_code=memory.generated_code,
            analytic_state_bytes=12 * exp.num_params / state_shards,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total": self.total, "state_vs_analytic": self.state_vs_analytic}

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the printed report."""
        other = _bytes(self.other_arguments)
        if self.layout_padding:
            other += f" (layout tile padding {_bytes(self.layout_padding)})"
        return [
            ("per-chip memory by content", "(sums to the total above)"),
            ("  parameters", _bytes(self.parameters)),
            ("  optimizer state", _bytes(self.optimizer_state)),
            ("  params + optimizer / analytic", f"{self.state_vs_analytic:.3f} "
                                                f"(analytic 12 B/param / state shards: "
                                                f"{_bytes(self.analytic_state_bytes)})"),
            ("  step counter + extra state", _bytes(self.extra_state)),
            ("  batch", _bytes(self.batch)),
            ("  other arguments", other),
            ("  outputs not donated", _bytes(self.outputs_not_aliased)),
            ("  gradients (estimate, in temporaries)", _bytes(self.gradients)),
            ("  activations + scratch (temporaries)", _bytes(self.activations_and_scratch)),
            ("  generated code", _bytes(self.generated_code)),
            ("  total", _bytes(self.total)),
        ]


def _gradient_bytes(exp: Experiment) -> int:
    """One f32 gradient of the trainable parameters, sharded like them (frozen leaves get none)."""
    params, shardings = exp.layout.abstract.params, exp.layout.shardings.params
    trainable = exp.objective.trainable
    keep = jax.tree.leaves(trainable(params)) if trainable is not None else [True] * len(jax.tree.leaves(params))
    pairs = [(jax.ShapeDtypeStruct(leaf.shape, jnp.float32), sharding)
             for leaf, sharding, trained in zip(jax.tree.leaves(params), jax.tree.leaves(shardings), keep, strict=True)
             if trained]
    return shard_bytes([leaf for leaf, _ in pairs], [sharding for _, sharding in pairs])


@dataclasses.dataclass(frozen=True)
class AotReport:
    topology: str
    device_kind: str
    chip: str | None
    num_devices: int
    mesh: dict[str, int]
    parameters: int
    batch_size: int
    compile_s: float
    memory: MemoryReport
    breakdown: MemoryBreakdown
    hbm_bytes: int | None
    estimated_state_bytes: float
    estimated_activation_bytes: float
    compiled_flops_per_device: float | None
    model_flops_per_step: float  # analytic, what MFU counts
    hardware_flops_per_step: float  # analytic, with remat's recomputation
    xla_counts_loop_body_once: bool  # scan_layers: XLA's count sees each scanned block once
    peak_flops_per_device: float | None
    xla_estimated_step_s: float | None
    num_slices: int = 1  # TPU slices joined by DCN; the mesh's data axis spans them

    @property
    def estimated_total_bytes(self) -> float:
        return self.estimated_state_bytes + self.estimated_activation_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.hbm_bytes is None else self.memory.total <= self.hbm_bytes

    @property
    def step_time_at_peak_s(self) -> float | None:
        """Lower bound on the step time: the analytic FLOPs at every chip's peak FLOP/s."""
        if not self.peak_flops_per_device:
            return None
        return self.hardware_flops_per_step / (self.num_devices * self.peak_flops_per_device)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["memory"]["total"] = self.memory.total
        out["breakdown"] = self.breakdown.to_dict()
        out.update(
            estimated_total_bytes=self.estimated_total_bytes,
            memory_vs_estimate=self.memory.total / self.estimated_total_bytes,
            fits=self.fits,
            step_time_at_peak_s=self.step_time_at_peak_s,
        )
        return out


def compile_train_step(config: ExperimentConfig, topology: str = LOCAL, *,
                       vocab_size: int | None = None, peak_flops: float | None = None) -> AotReport:
    """Compile the train step of `config` for `topology` and report memory and FLOPs.

    `vocab_size` defaults to data.vocab_size, the tokenizer's upper bound (a trained tokenizer
    can be smaller), so the embedding table is never underestimated.
    """
    target = target_devices(topology, peak_flops=peak_flops)
    exp = Experiment.plan(config, vocab_size, devices=target.devices)
    start = time.perf_counter()
    compiled = compile_step(exp)
    compile_s = time.perf_counter() - start
    mesh = exp.mesh
    state_shards = mesh.shape["fsdp"] * mesh.shape["tensor"]
    estimate = estimate_memory_per_chip(
        exp.objective, exp.num_params, state_shards=state_shards,
        batch_shards=math.prod(mesh.shape[axis] for axis in BATCH_AXES),
    )
    memory = MemoryReport.of(compiled)
    flops = exp.flops()
    return AotReport(
        topology=target.name,
        device_kind=target.devices[0].device_kind,
        chip=target.chip.name if target.chip else None,
        num_devices=len(target.devices),
        mesh=dict(mesh.shape),
        parameters=exp.num_params,
        batch_size=config.batch_size,
        compile_s=compile_s,
        memory=memory,
        breakdown=MemoryBreakdown.of(memory, exp, compiled, state_shards),
        hbm_bytes=target.chip.hbm_bytes if target.chip else None,
        estimated_state_bytes=estimate.state_bytes,
        estimated_activation_bytes=estimate.activation_bytes,
        compiled_flops_per_device=compiled_flops(compiled),
        model_flops_per_step=flops.model,
        hardware_flops_per_step=flops.hardware,
        xla_counts_loop_body_once=config.model.scan_layers,
        peak_flops_per_device=target.chip.peak_bf16_flops if target.chip else None,
        xla_estimated_step_s=_xla_seconds(compiled),
        num_slices=len(group_by_slice(target.devices)),
    )


def _xla_seconds(compiled: Any) -> float | None:
    """XLA's own run-time estimate, where the backend's cost analysis has one (TPU)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    seconds = (analysis or {}).get("optimal_seconds")
    return float(seconds) if seconds and seconds > 0 else None


def _bytes(n: float | None) -> str:
    """GiB, or MiB / KiB for what a GiB would round to nothing (small configs, state shards)."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale / 10:
            return f"{n / scale:.3f} {unit}"
    return f"{n:.0f} B"


def _flops(n: float | None) -> str:
    return "-" if n is None else f"{n:.4g}"


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f} ms"


def format_report(report: AotReport) -> str:
    m = report.memory
    compiled_total = (
        None if report.compiled_flops_per_device is None
        else report.compiled_flops_per_device * report.num_devices
    )
    loop_note = " (scanned blocks counted once)" if report.xla_counts_loop_body_once else ""
    fits = {None: "unknown chip", True: "yes", False: "NO"}[report.fits]
    devices = f"{report.num_devices} x {report.device_kind}"
    mesh = " ".join(f"{k}={v}" for k, v in report.mesh.items())
    if report.num_slices > 1:
        devices = (f"{report.num_slices} slices x {report.num_devices // report.num_slices} "
                   f"x {report.device_kind} ({report.num_devices} devices)")
        mesh += f" (data across the {report.num_slices} slices over DCN)"
    rows = [
        ("topology", f"{report.topology}: {devices}"),
        ("mesh", mesh),
        ("parameters", f"{report.parameters:,}"),
        ("global batch", f"{report.batch_size}"),
        ("compile time", f"{report.compile_s:.1f} s"),
        ("per-chip memory: arguments", _bytes(m.argument)),
        ("  outputs", _bytes(m.output)),
        ("  aliased (donated)", _bytes(m.alias)),
        ("  temporaries", _bytes(m.temp)),
        ("  generated code", _bytes(m.generated_code)),
        ("  total", _bytes(m.total)),
        ("  closed-form estimate", f"{_bytes(report.estimated_total_bytes)} "
                                   f"(state {_bytes(report.estimated_state_bytes)}, "
                                   f"activations {_bytes(report.estimated_activation_bytes)})"),
        ("  XLA / estimate", f"{m.total / report.estimated_total_bytes:.2f}"),
        *report.breakdown.lines(),
        ("  activations: XLA / estimate",
         f"{report.breakdown.activations_and_scratch / report.estimated_activation_bytes:.2f}"),
        ("HBM per chip", _bytes(report.hbm_bytes)),
        ("fits", fits),
        ("FLOPs/step, XLA cost analysis", _flops(compiled_total) + loop_note),
        ("FLOPs/step, analytic (model)", _flops(report.model_flops_per_step)),
        ("FLOPs/step, analytic (with remat)", _flops(report.hardware_flops_per_step)),
        ("step time at peak FLOP/s", _seconds(report.step_time_at_peak_s)),
        ("step time, XLA estimate", _seconds(report.xla_estimated_step_s)),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def write_json(report: AotReport, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def run_compile(config: ExperimentConfig, topology: str, *, peak_tflops: float | None = None,
                json_out: str | None = None) -> AotReport:
    """`radfm compile`: compile, print the report, optionally write it as JSON."""
    if json_out is not None and not Path(json_out).parent.is_dir():
        raise ConfigError(f"cannot write '{json_out}': folder '{Path(json_out).parent}' does not exist")
    peak = None if peak_tflops is None else peak_tflops * 1e12
    report = compile_train_step(config, topology, peak_flops=peak)
    print(format_report(report))
    if json_out is not None:
        print(f"wrote {write_json(report, json_out)}")
    return report
