"""Comparing parameters after Adam steps computed two ways (sharded vs one device, chunked vs
full batch). Adam's early updates are about lr * sign(grad): where a gradient is within
rounding of 0, its sign (so its update) may differ by up to 2 * lr per step. Those elements are
few; every other one must agree tightly."""

from __future__ import annotations

import jax
import numpy as np


def assert_params_close(params, reference, *, learning_rate: float, steps: int, rtol: float, atol: float,
                        max_sign_flips: float = 0.01) -> None:
    """Each leaf equal to (rtol, atol) except at most `max_sign_flips` of its elements, and those
    within 2 * learning_rate * steps."""

    def check(path, a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff = np.abs(a - b)
        loose = diff > atol + rtol * np.abs(b)
        name = jax.tree_util.keystr(path)
        assert loose.mean() <= max_sign_flips, f"{name}: {loose.sum()} of {loose.size} elements differ"
        assert diff.max(initial=0.0) <= 2 * learning_rate * steps + atol, f"{name}: max difference {diff.max()}"

    jax.tree_util.tree_map_with_path(check, params, reference)
