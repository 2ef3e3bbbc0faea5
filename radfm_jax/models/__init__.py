"""Flax NNX models. Every parameter carries logical axis names (see parallel/rules.py)."""

import flax

# We place variables ourselves (jitted init with out_shardings from parallel/rules.py), so
# variables must not try to shard themselves eagerly at construction.
flax.config.update("flax_always_shard_variable", False)
