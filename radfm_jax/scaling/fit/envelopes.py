"""Envelopes of a sweep: the best run per value of one axis, and the compute frontier."""

from __future__ import annotations

import numpy as np

from radfm_jax.scaling.fit.inputs import ArrayLike, finite_column, same_length


def best_per_value(
    x: ArrayLike, metric: ArrayLike, *, increasing_metric: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct x, the best metric over the other sweep axes (sorted by x).

    Fitting these envelopes gives the law in x when the other axes are not the bottleneck.
    """
    xs, values = finite_column("x", x), finite_column("metric", metric)
    same_length(x=xs, metric=values)
    distinct = np.unique(xs)
    pick = np.max if increasing_metric else np.min
    return distinct, np.array([pick(values[xs == v]) for v in distinct])


def compute_frontier(
    flops: ArrayLike, metric: ArrayLike, *, increasing_metric: bool = False, rtol: float = 0.05
) -> np.ndarray:
    """Indices (by increasing FLOPs) of runs better than every other run costing at most
    (1 + rtol) times as much; rtol makes runs of one budget, whose FLOPs differ by step
    rounding, compete with each other rather than all count as the cheapest."""
    compute, values = finite_column("flops", flops), finite_column("metric", metric)
    same_length(flops=compute, metric=values)
    score = -values if increasing_metric else values
    frontier = []
    for index in np.lexsort((score, compute)):
        rivals = compute <= compute[index] * (1.0 + rtol)
        rivals[index] = False
        if not rivals.any() or score[index] < score[rivals].min():
            frontier.append(int(index))
    return np.array(frontier, dtype=int)
