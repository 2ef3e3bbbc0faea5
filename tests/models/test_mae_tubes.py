"""MAE's tube masking of volumes: whole tubes (one (h, w) position through every depth) are
hidden or kept, the kept tokens reach the encoder depth-major, and the permutation restores
patch order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from radfm_jax.models.mae import mask_order, visible_count


@pytest.mark.parametrize("tube, per_slice, ratio", [(4, 6, 0.5), (2, 9, 0.75), (1, 10, 0.6)])
def test_tubes_are_kept_or_hidden_whole_and_arrive_depth_major(tube, per_slice, ratio):
    n, batch = tube * per_slice, 3
    tube_noise = np.asarray(jax.random.uniform(jax.random.key(tube), (batch, per_slice)))
    noise = jnp.tile(tube_noise, (1, tube))  # as the MAE objective draws it
    keep = visible_count(n, ratio, tube)
    assert keep % tube == 0
    order = np.asarray(mask_order(noise, keep, tube))
    for b in range(batch):
        assert sorted(order[b]) == list(range(n))  # a permutation
        # Independent reference: the kept positions are the keep / tube lowest tube draws.
        kept_positions = np.argsort(tube_noise[b], kind="stable")[: keep // tube]
        visible = order[b, :keep].reshape(tube, keep // tube)  # (depth, kept positions)
        np.testing.assert_array_equal(visible % per_slice, np.broadcast_to(kept_positions, visible.shape))
        np.testing.assert_array_equal(visible // per_slice, np.arange(tube)[:, None] * np.ones_like(visible))
        hidden = set(order[b, keep:] % per_slice)
        assert hidden.isdisjoint(kept_positions)  # no tube is split between kept and hidden


def test_without_tubes_the_order_is_argsort_of_the_noise():
    noise = jax.random.uniform(jax.random.key(0), (2, 12))
    np.testing.assert_array_equal(mask_order(noise, 3, 1), np.argsort(np.asarray(noise), axis=1))
