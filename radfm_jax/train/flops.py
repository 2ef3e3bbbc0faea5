"""FLOPs of a train step as the trainer reports them: XLA's count read from the compiled
executable, and the throughput metrics of a logged step (examples/s per device, MFU).

The analytic count is the objective's (Objective.flops, from its towers' costs in
models/costs.py): *model* FLOPs, what MFU divides by. Recomputation (a model.remat policy,
GradCache's second forward pass) is not model FLOPs (PaLM, Chowdhery et al. 2022, appendix B);
it is reported separately so that `hardware` FLOPs can be compared with XLA's count.
"""

from __future__ import annotations

from typing import Any

from radfm_jax.parallel.chips import chip_for_device


def compiled_flops(compiled: Any) -> float | None:
    """XLA's FLOP count of a compiled executable, per device (`compiled.cost_analysis()`);
    None where the backend reports none.

    XLA counts every operation (elementwise ops and the optimizer too), so it is a little above
    the analytic count; but it counts the body of a loop once, so with model.scan_layers the
    blocks appear once, not `depth` times.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


class ThroughputMeter:
    """Throughput metrics of a logged step: examples/s per device, model and XLA FLOPs per step
    and, on a chip with a known peak, MFU = model FLOPs / (step time x devices x peak).

    Host-side arithmetic on the measured step time only: no device synchronisation. XLA's
    count is read once, from the executable the loop runs (`compiled_step.compiled`).
    """

    def __init__(self, batch_size: int, model_flops: float, devices: list[Any], compiled_step: Any):
        self._batch_size = batch_size
        self._num_devices = len(devices)
        self._model_flops = model_flops
        chip = chip_for_device(devices[0])
        self._peak = chip.peak_bf16_flops if chip else None
        self._compiled_step = compiled_step
        self._compiled_flops: float | None = None

    def metrics(self, step_time_s: float) -> dict[str, float]:
        if self._compiled_flops is None and self._compiled_step.compiled is not None:
            per_device = compiled_flops(self._compiled_step.compiled)
            self._compiled_flops = per_device * self._num_devices if per_device else None
        out = {
            "examples_per_sec_per_device": self._batch_size / step_time_s / self._num_devices,
            "model_flops_per_step": self._model_flops,
        }
        if self._compiled_flops is not None:
            out["compiled_flops_per_step"] = self._compiled_flops
        if self._peak:
            out["mfu"] = self._model_flops / (step_time_s * self._num_devices * self._peak)
        return out
