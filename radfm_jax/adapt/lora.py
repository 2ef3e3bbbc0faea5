"""Low-rank adapters after training: fold them into the weights they adapt (export) and count
what they cost. Adapters are flax.nnx.LoRA modules inside models/layers.LoraLinearGeneral: a
kernel (in..., out...) with a sibling `lora` holding lora_a (in, r) and lora_b (r, out) over the
flattened dimensions, and the update scaled by alpha / rank."""

from __future__ import annotations

from typing import Any

import numpy as np

Params = dict[str, Any]


def merge_lora(params: Params, scale: float) -> Params:
    """`params` with every adapter folded into its kernel (kernel + scale * A B, reshaped) and
    the adapters removed: a plain model that computes what the adapted one did. Works for
    scanned stacks too (a leading layers axis on the kernel and both adapter matrices)."""
    if not isinstance(params, dict):
        return params
    merged = {key: merge_lora(value, scale) for key, value in params.items() if key != "lora"}
    if "lora" in params:
        kernel = np.asarray(params["kernel"])
        a, b = np.asarray(params["lora"]["lora_a"]), np.asarray(params["lora"]["lora_b"])
        update = scale * np.matmul(a, b)  # (..., in_flat, out_flat)
        merged["kernel"] = (kernel + update.reshape(kernel.shape)).astype(kernel.dtype)
    return merged


def count_parameters(params: Params) -> tuple[int, int]:
    """(adapter parameters, all parameters) of a params tree."""
    def walk(tree: Any, in_adapter: bool) -> tuple[int, int]:
        if not isinstance(tree, dict):
            size = int(np.size(tree))
            return (size if in_adapter else 0), size
        adapter = total = 0
        for key, value in tree.items():
            a, t = walk(value, in_adapter or key == "lora")
            adapter, total = adapter + a, total + t
        return adapter, total

    return walk(params, False)
